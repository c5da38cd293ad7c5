"""Simulated systems for engine and CLI tests: start them, and write the config that uses them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from watcher.simulators.arcgis import ArcGisSimulator
from watcher.simulators.base import Simulator, Step
from watcher.simulators.brpm import BrpmSimulator
from watcher.simulators.gardin import GardinSimulator
from watcher.simulators.rsa_governance import RsaSimulator

SECRETS = ("rsa-token", "arcgis-password", "gardin-secret", "brpm-token")

#: per system: simulator factory, server table (``{url}`` filled in), and its states to script
SYSTEMS = {
    "rsa_governance": (
        lambda runs: RsaSimulator(runs),
        'kind = "rsa_governance"\nurl = "{url}"\ntoken = "rsa-token"',
        ("New", "Running", "Completed", "Aborted"),
    ),
    "arcgis": (
        lambda runs: ArcGisSimulator({f"T1/{k}": v for k, v in runs.items()}),
        'kind = "arcgis"\nurl = "{url}"\nusername = "admin"\npassword = "arcgis-password"\n'
        'token_url = "{root}/sharing/rest/generateToken"',
        ("scheduled", "executing", "succeeded", "failed"),
    ),
    "gardin": (
        lambda runs: GardinSimulator(runs),
        'kind = "gardin"\nurl = "{url}"\nclient_id = "gardin-client"\n'
        'client_secret = "gardin-secret"\ntoken_url = "{root}/oauth2/token"',
        ("SUBMITTED", "RUNNING", "COMPLETED", "FAILED"),
    ),
    "brpm": (
        lambda runs: BrpmSimulator(runs),
        'kind = "brpm"\nurl = "{url}"\ntoken = "brpm-token"',
        ("created", "started", "completed", "cancelled"),
    ),
}


def simulator(kind: str, runs: Mapping[str, Sequence[Step]]) -> Simulator:
    return SYSTEMS[kind][0](runs)  # type: ignore[no-untyped-call]


def server_table(kind: str, name: str, url: str) -> str:
    root = url.removesuffix("/admin") if kind == "arcgis" else url.rsplit("/", 1)[0]
    return f"[servers.{name}]\n" + SYSTEMS[kind][1].format(url=url, root=root) + "\n"


def watch_table(kind: str, server: str, run: str, **keys: object) -> str:
    lines = [f'server = "{server}"', f'id = "{run}"']
    if kind == "arcgis":
        lines.append('task = "T1"')
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in keys.items()]
    return "[[watches]]\n" + "\n".join(lines) + "\n"


def config_text(state: Path, hook: str, servers: str, watches: str, **defaults: object) -> str:
    pacing = {"interval": 0.02, "backoff": 1.0, "max_interval": 0.05, "timeout": 20, **defaults}
    lines = [f"{k} = {v!r}".replace("'", '"') for k, v in pacing.items()]
    return (
        f'[daemon]\nstate = "{state.as_posix()}"\n\n[defaults]\n'
        + "\n".join(lines)
        + '\nnotify = ["hook"]\n\n[channels.hook]\n'
        + f'url = "{hook}"\non = ["succeeded", "failed", "cancelled", "timeout", "error", '
        + '"unreachable", "recovered", "changed", "attention"]\n\n'
        + servers
        + "\n"
        + watches
    )


def write_config(folder: Path, hook: str, servers: str, watches: str, **defaults: object) -> Path:
    """``folder/w.toml`` for these servers and watches, its state in ``folder/s.db``."""
    path = folder / "w.toml"
    path.write_text(config_text(folder / "s.db", hook, servers, watches, **defaults), "utf-8")
    return path


@contextmanager
def in_background(*sims: Simulator) -> Iterator[list[str]]:
    """Run simulators on a loop of their own thread (for synchronous CLI tests)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        urls = [asyncio.run_coroutine_threadsafe(s.start(), loop).result(5) for s in sims]
        yield urls
    finally:
        for sim in sims:
            asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


async def soon(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait until ``check()`` holds (tests on injected time: only the loop's turns pass)."""
    async with asyncio.timeout(timeout_s):
        while not check():
            await asyncio.sleep(0.01)


async def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by openssl in ``folder``."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    made = await asyncio.create_subprocess_exec(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        "-keyout", str(key), "-out", str(cert),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await made.wait() == 0
    return cert, key
