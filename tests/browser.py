"""Headless Chromium for the tests: its command line, and the DevTools protocol where it must.

:func:`chromium` finds the browser, or skips the test when it is not installed (it fails
instead when ``WATCHER_REQUIRE_BROWSER=1``). :func:`dump_dom`, :func:`screenshot` and
:func:`console` each run one fresh browser from the command line, with a profile of its own
under ``profile_dir``, as a subprocess of the test's event loop, so an aiohttp server in the same
loop keeps answering. :func:`evaluate` measures a page in a viewport of any size: a headless
window is never narrower than 500 pixels, so a phone needs the DevTools protocol's emulation.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container: chromium refuses to start otherwise
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
)
TIMEOUT_S = 60.0


def chromium() -> str:
    """The chromium binary; skips the test without one (fails with WATCHER_REQUIRE_BROWSER=1)."""
    found = shutil.which("chromium")
    if found:
        return found
    msg = "chromium is not installed (apt-get install chromium)"
    if os.environ.get("WATCHER_REQUIRE_BROWSER") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


async def _start(profile: Path, *args: str, pipes: bool = True) -> asyncio.subprocess.Process:
    out = asyncio.subprocess.PIPE if pipes else asyncio.subprocess.DEVNULL
    return await asyncio.create_subprocess_exec(
        chromium(),
        *FLAGS,
        f"--user-data-dir={profile}",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=out,
        stderr=out,
        start_new_session=True,  # its own process group, so ending it ends its children too
    )


async def _end(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()


async def _run(profile_dir: Path, *args: str) -> tuple[str, str]:
    """Run chromium with :data:`FLAGS`, a fresh profile and ``args``: its stdout and stderr."""
    proc = await _start(Path(tempfile.mkdtemp(prefix="chromium-", dir=profile_dir)), *args)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
    except TimeoutError:
        await _end(proc)
        pytest.fail(f"chromium took longer than {TIMEOUT_S:.0f}s: {' '.join(args)}")
    text = err.decode(errors="replace")
    if proc.returncode != 0:
        pytest.fail(f"chromium exited with {proc.returncode}: {' '.join(args)}\n{text}")
    return out.decode(errors="replace"), text


async def dump_dom(url: str, profile_dir: Path) -> str:
    """The DOM of ``url`` once loaded, serialised as HTML."""
    out, _ = await _run(profile_dir, "--dump-dom", url)
    return out


async def screenshot(url: str, path: Path, width: int, height: int, profile_dir: Path) -> None:
    """Write a PNG of ``url`` laid out in a viewport of ``width`` x ``height`` to ``path``."""
    size = f"--window-size={width},{height}"
    await _run(profile_dir, "--hide-scrollbars", size, f"--screenshot={path}", url)


async def console(url: str, profile_dir: Path) -> str:
    """What chromium logs while loading ``url``: console messages, CSP violations among them."""
    _, err = await _run(profile_dir, "--enable-logging=stderr", "--v=0", "--dump-dom", url)
    return err


class _DevTools:
    """Commands to a browser over its DevTools socket; events wait in a list until asked for."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._sent = 0
        self._events: list[dict[str, Any]] = []

    async def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        self._sent += 1
        message = {"id": self._sent, "method": method, "params": params}
        await self._socket.send_json({**message, "sessionId": session} if session else message)
        while True:
            answer = await self._socket.receive_json()
            if answer.get("id") == self._sent:
                assert "error" not in answer, f"{method}: {answer['error']}"
                return answer["result"]
            self._events.append(answer)

    def forget(self) -> None:
        """Drop the events so far: :meth:`event` then waits for a new one."""
        self._events.clear()

    async def event(self, method: str) -> dict[str, Any]:
        while not any(e.get("method") == method for e in self._events):
            self._events.append(await self._socket.receive_json())
        return next(e for e in self._events if e.get("method") == method)


async def evaluate(
    url: str, expression: str, width: int, height: int, profile_dir: Path, *, mobile: bool
) -> Any:
    """The value of ``expression`` (JavaScript) once ``url`` has loaded in a viewport of
    ``width`` x ``height`` CSS pixels; ``mobile`` makes it a phone's (the page's viewport
    ``<meta>`` applies). DevTools evaluation is not subject to the page's CSP."""
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=profile_dir))
    proc = await _start(profile, "--remote-debugging-port=0", "about:blank", pipes=False)
    try:
        async with asyncio.timeout(TIMEOUT_S):
            port_file = profile / "DevToolsActivePort"
            while not port_file.is_file() or len(port_file.read_text().split()) < 2:
                await asyncio.sleep(0.05)
            port, path = port_file.read_text().split()[:2]
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0) as socket,
            ):
                tools = _DevTools(socket)
                target = await tools.call("Target.createTarget", url="about:blank")
                attached = await tools.call(
                    "Target.attachToTarget", targetId=target["targetId"], flatten=True
                )
                tab = attached["sessionId"]
                metrics = {"width": width, "height": height, "deviceScaleFactor": 1}
                await tools.call(
                    "Emulation.setDeviceMetricsOverride", tab, **metrics, mobile=mobile
                )
                await tools.call("Page.enable", tab)
                tools.forget()
                await tools.call("Page.navigate", tab, url=url)
                await tools.event("Page.loadEventFired")
                found = await tools.call(
                    "Runtime.evaluate", tab, expression=expression, returnByValue=True
                )
                return found["result"]["value"]
    except TimeoutError:
        pytest.fail(f"chromium took longer than {TIMEOUT_S:.0f}s to measure {url}")
    finally:
        await _end(proc)
