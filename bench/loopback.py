"""Loopback pieces of the side-by-side benchmark: a Gardin status server and a bare client loop.

The server answers ``GET /v2/query/{id}/status`` for any id without checking the token:
``IN_PROGRESS`` (non-terminal), or ``COMPLETED`` for ids starting with ``done-``. It is nginx
when the ``nginx`` binary is on PATH (one worker, ``stub_status`` counts requests), else an
aiohttp server in its own process (a counter at ``/_bench/count``). Either way
:meth:`Loopback.requests` is the number of status requests served so far, and
:meth:`Loopback.probe_times` when each poll of the run :data:`PROBE` came (nginx logs them to a
file, the aiohttp server keeps them at ``/_bench/probe``).

Run as a script, this module is the aiohttp server or the bare loop, each in its own process::

    python bench/loopback.py serve              # prints its port, serves until killed
    python bench/loopback.py baseline URL --seconds 15 --concurrency 64   # prints one JSON line
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from aiohttp import ClientSession, TCPConnector, web

TOKEN = "bench-token"
DONE_PREFIX = "done-"
COUNT_PATH = "/_bench/count"
PROBE_PATH = "/_bench/probe"
PROBE = "probe"
"""The run whose polls are timed, one by one."""
START_TIMEOUT_S = 15.0
BASELINE_WARMUP_S = 1.0


def status_body(query_id: str, state: str) -> str:
    """A Gardin status answer, shaped as the simulator renders it."""
    body: dict[str, str] = {
        "queryId": query_id,
        "status": state,
        "requestedAt": "2024-04-02T16:20:09.736000+00:00",
        "updatedAt": "2024-04-02T16:20:20.667925+00:00",
    }
    if state == "COMPLETED":
        body["expiresAt"] = "2024-04-04T16:20:20.667953+00:00"
    return json.dumps(body, separators=(",", ":"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def nginx_config(tmp: Path, port: int) -> str:
    """An nginx configuration serving the two answers and ``stub_status`` on ``port``."""
    running, done = status_body("$1", "IN_PROGRESS"), status_body("$1", "COMPLETED")
    probe = status_body(PROBE, "IN_PROGRESS")
    return f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    log_format probe '$msec';
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    server {{
        listen 127.0.0.1:{port};
        default_type application/json;
        location ~ ^/v2/query/{PROBE}/status/?$ {{
            access_log {tmp}/probe.log probe;
            return 200 '{probe}';
        }}
        location ~ ^/v2/query/({DONE_PREFIX}[^/]+)/status/?$ {{ return 200 '{done}'; }}
        location ~ ^/v2/query/([^/]+)/status/?$ {{ return 200 '{running}'; }}
        location = {COUNT_PATH} {{ stub_status; }}
    }}
}}
"""


class Loopback:
    """The status server in its own process; :meth:`stop` ends it, whatever state it is in.

    Args:
        tmp: a directory for its configuration and logs.
        prefer_nginx: use nginx when it is installed.
    """

    def __init__(self, tmp: Path, *, prefer_nginx: bool = True) -> None:
        self.nginx = prefer_nginx and shutil.which("nginx") is not None
        self._probe_log = tmp / "probe.log"
        self._reads = 0
        if self.nginx:
            self.port = free_port()
            conf = tmp / "nginx.conf"
            conf.write_text(nginx_config(tmp, self.port))
            command = ["nginx", "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "nginx-error.log")]
            self.process = subprocess.Popen(command, start_new_session=True)
        else:
            command = [sys.executable, __file__, "serve"]
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, start_new_session=True)
            assert self.process.stdout is not None
            self.port = int(self.process.stdout.readline() or 0)
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait_up()

    @property
    def name(self) -> str:
        if self.nginx:
            version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
            return version.strip().removeprefix("nginx version: ")
        return "aiohttp server (own process)"

    def _wait_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.requests()
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the loopback server did not start on port {self.port}")

    def requests(self) -> int:
        """Status requests served so far (reads of the counter itself not included)."""
        with urllib.request.urlopen(self.url + COUNT_PATH, timeout=5) as reply:
            text = reply.read().decode()
        if not self.nginx:
            return int(text)
        self._reads += 1  # stub_status counts every request, this one included
        return int(text.splitlines()[2].split()[2]) - self._reads

    def probe_times(self) -> list[float]:
        """When each poll of :data:`PROBE` was served so far (Unix times, in order)."""
        if self.nginx:
            if not self._probe_log.exists():
                return []
            return [float(line) for line in self._probe_log.read_text().split()]
        with urllib.request.urlopen(self.url + PROBE_PATH, timeout=5) as reply:
            times: list[float] = json.loads(reply.read())
        return times

    def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL after 5 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


# --- the aiohttp server process ----------------------------------------------------------------


async def serve() -> None:
    """Serve until killed; prints the port first."""
    served = 0
    probed: list[float] = []

    async def status(request: web.Request) -> web.Response:
        nonlocal served
        served += 1
        query_id = request.match_info["query_id"]
        if query_id == PROBE:
            probed.append(time.time())
        state = "COMPLETED" if query_id.startswith(DONE_PREFIX) else "IN_PROGRESS"
        return web.Response(text=status_body(query_id, state), content_type="application/json")

    async def count(request: web.Request) -> web.Response:
        return web.Response(text=str(served))

    async def probe(request: web.Request) -> web.Response:
        return web.json_response(probed)

    app = web.Application()
    app.router.add_get("/v2/query/{query_id}/status", status)
    app.router.add_get(COUNT_PATH, count)
    app.router.add_get(PROBE_PATH, probe)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()


# --- the bare client loop ----------------------------------------------------------------------


async def baseline(url: str, seconds: float, concurrency: int) -> dict[str, float]:
    """GET + ``json.loads`` from ``concurrency`` tasks on one session for ``seconds``.

    The first second is a warm-up (connections opened) and is not counted.
    """
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
    counting = False
    done = 0

    async def worker(session: ClientSession, n: int) -> None:
        nonlocal done
        while True:
            n += concurrency
            async with session.get(f"{url}/v2/query/q{n % 10_000}/status") as resp:
                json.loads(await resp.read())
            if counting:
                done += 1

    async with ClientSession(connector=TCPConnector(limit=concurrency), headers=headers) as s:
        tasks = [asyncio.create_task(worker(s, n)) for n in range(concurrency)]
        await asyncio.sleep(BASELINE_WARMUP_S)
        counting, cpu0, wall0 = True, time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        counting = False
        result = {
            "requests": float(done),
            "cpu_s": time.process_time() - cpu0,
            "wall_s": time.perf_counter() - wall0,
        }
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="the aiohttp status server")
    p = sub.add_parser("baseline", help="the bare aiohttp client loop")
    p.add_argument("url")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    if args.command == "serve":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve())
        return
    print(json.dumps(asyncio.run(baseline(args.url, args.seconds, args.concurrency))))


if __name__ == "__main__":
    main()
