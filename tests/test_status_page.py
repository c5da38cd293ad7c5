"""The status page of a real daemon: in headless Chromium (rows, a remote system's hostile error
shown as text, screenshots at laptop and phone widths), and the read token kept in a cookie."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests import browser
from tests.conftest import Receiver, _free_port
from tests.systems import config_text, server_table, soon, watch_table
from tests.test_api import ADMIN, READ, api_table, daemon
from tests.test_page import Read, png_size
from watcher.simulators.gardin import GardinSimulator

HOSTILE = "<script>document.title='pwned'</script><img src=x onerror=\"alert(1)\">"


class HostileGardin(GardinSimulator):
    """A Gardin whose failed queries say something a page must not run."""

    def render(self, run_id: str, state: str) -> web.StreamResponse:
        if state != "FAILED":
            return super().render(run_id, state)
        return web.json_response({"queryId": run_id, "status": state, "error": HOSTILE})


@pytest.fixture
async def gardin() -> AsyncIterator[GardinSimulator]:
    sim = HostileGardin({"q-bad": ["FAILED"], "q-long": ["RUNNING"] * 10**6, "q-ok": ["COMPLETED"]})
    await sim.start()
    yield sim
    await sim.stop()


def write(folder: Path, hook: str, url: str, **api: object) -> Path:
    (folder / "read.token").write_text(READ, "utf-8")
    watches = "".join(
        watch_table("gardin", "lake", query, name=f"query {query}")
        for query in ("q-bad", "q-long", "q-ok")
    )
    text = config_text(folder / "s.db", hook, server_table("gardin", "lake", url), watches)
    path = folder / "w.toml"
    path.write_text(text + api_table(_free_port(), **api), "utf-8")
    return path


async def test_the_browser_lists_the_watches_and_shows_a_hostile_error_as_text(
    tmp_path: Path, receiver: Receiver, gardin: GardinSimulator
) -> None:
    browser.chromium()
    path = write(tmp_path, receiver.url, gardin.url, anonymous_read=True)
    async with daemon(path) as (_, url):
        await soon(lambda: len(receiver.titles) >= 2, timeout_s=10)  # both ended queries told
        dom = await browser.dump_dom(f"{url}/", tmp_path)
        desktop, phone = tmp_path / "desktop.png", tmp_path / "phone.png"
        await asyncio.gather(
            browser.screenshot(f"{url}/", desktop, 1280, 800, tmp_path),
            browser.screenshot(f"{url}/", phone, 390, 844, tmp_path),
        )
        log = await browser.console(f"{url}/", tmp_path)
    found = Read(dom)
    rows = found.by_key()
    assert set(rows) == {"lake//q-bad", "lake//q-long", "lake//q-ok"}
    assert rows["lake//q-bad"]["detail"].startswith("<script>")  # shown, as text
    assert "&lt;script&gt;" in dom and not {"script", "img"} & {t for t, _, _ in found.tags}
    assert found.title == "watcher status"  # the script never ran
    assert [line for line in log.splitlines() if ":CONSOLE" in line] == []  # no CSP violation
    assert png_size(desktop) == (1280, 800) and png_size(phone) == (390, 844)


async def test_a_read_token_is_entered_once_and_kept_in_a_strict_cookie_that_never_writes(
    tmp_path: Path, receiver: Receiver, gardin: GardinSimulator
) -> None:
    path = write(tmp_path, receiver.url, gardin.url)
    async with daemon(path) as (_, url), aiohttp.ClientSession() as session:
        async with session.get(f"{url}/") as resp:
            shown = await resp.text()
        assert 'action="/sign-in"' in shown and "q-long" not in shown  # no data without a token
        for wrong in (READ[:-1], ADMIN):  # a wrong one, and one wider than read
            async with session.post(f"{url}/sign-in", data={"token": wrong}) as resp:
                said = await resp.text()
                assert resp.status == 401 and "not accepted" in said and "q-long" not in said
                assert "Set-Cookie" not in resp.headers
        cross = {"Sec-Fetch-Site": "cross-site"}  # a form another site posts
        async with session.post(f"{url}/sign-in", data={"token": READ}, headers=cross) as resp:
            assert resp.status == 403 and "Set-Cookie" not in resp.headers
        async with session.post(
            f"{url}/sign-in", data={"token": READ}, allow_redirects=False
        ) as resp:
            assert resp.status == 303
            cookie = resp.headers["Set-Cookie"]
        flags = ("HttpOnly", "Secure", "SameSite=Strict", "Path=/", "Max-Age=86400")  # a day
        assert all(flag in cookie for flag in flags)
        kept = cookie.split(";", 1)[0]
        headers = {"Cookie": kept}
        async with session.get(f"{url}/", headers=headers) as resp:
            assert "q-long" in await resp.text() and 'action="/sign-out"' in await resp.text()
        stale = {"Cookie": f"watcher_read={READ[:-1]}"}  # a token rotated since
        async with session.get(f"{url}/", headers=stale) as resp:
            assert 'action="/sign-in"' in await resp.text()
            assert (
                "watcher_read=" in resp.headers["Set-Cookie"]
                and "Max-Age=0" in resp.headers["Set-Cookie"]
            )
        run = {"server": "lake", "id": "q-new"}
        async with session.post(f"{url}/api/v1/watches", json=run, headers=headers) as resp:
            assert resp.status == 401  # a cookie authorises no write
        async with session.get(f"{url}/api/v1/watches", headers=headers) as resp:
            assert resp.status == 401  # nor the API: it takes the header only
