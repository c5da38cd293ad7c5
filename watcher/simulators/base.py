"""The machinery every simulator shares: scripted runs served by a real local HTTP server.

A run's script is a list of steps. Each status request consumes one step; the last step repeats
forever. A step is either a remote state (``"Running"``), which the simulator renders in its API's
JSON shape, or a :class:`Fault`, which it renders in its API's error dialect::

    sim = RsaSimulator({"5733": ["New", "Running", Fault.http(503, retry_after="1"), "Completed"]})
    url = await sim.start()
    ...
    await sim.stop()
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Middleware

FaultKind = Literal["http", "reset", "slow", "garbage"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Fault:
    """A scripted misbehaviour served instead of a state.

    Kinds:
        http: an error answer in the API's own error dialect (``status``, ``message``,
            ``retry_after`` header).
        reset: the connection is closed without an answer. aiohttp clients retry a reset of a
            reused keep-alive connection once by themselves, so script two in a row to be seen.
        slow: the answer (the previous state) comes only after ``delay_s``.
        garbage: HTTP 200 with an HTML page instead of JSON.
    """

    kind: FaultKind
    status: int = 500
    message: str = "simulated failure"
    retry_after: str | None = None
    delay_s: float = 0.0

    @classmethod
    def http(cls, status: int, message: str = "", retry_after: str | None = None) -> Fault:
        return cls("http", status, message or f"simulated HTTP {status}", retry_after)

    @classmethod
    def reset(cls) -> Fault:
        return cls("reset")

    @classmethod
    def slow(cls, delay_s: float) -> Fault:
        return cls("slow", delay_s=delay_s)

    @classmethod
    def garbage(cls) -> Fault:
        return cls("garbage")


Step = str | Fault

GARBAGE_PAGE = (
    "<html><head><title>Sign in</title></head>"
    "<body><h1>Sign in</h1><p>Please sign in to continue.</p></body></html>"
)


class Script:
    """The remaining steps of one run; the last one repeats."""

    def __init__(self, steps: Sequence[Step]) -> None:
        if not steps:
            raise ValueError("a script needs at least one step")
        self._steps = list(steps)
        self._next = 0
        self.last_state = next((s for s in self._steps if isinstance(s, str)), "")

    def advance(self) -> Step:
        step = self._steps[min(self._next, len(self._steps) - 1)]
        self._next += 1
        if isinstance(step, str):
            self.last_state = step
        return step


class Simulator(ABC):
    """A real HTTP server on loopback that serves scripted runs in one API's dialect.

    Subclasses add their routes in :meth:`routes` and render states and errors; inside a handler
    they call :meth:`serve` with the run id, which applies the next step of its script.

    Attributes:
        polls: status requests received per run id.
        requests: every request line received, for assertions in tests.
    """

    def __init__(self, runs: Mapping[str, Sequence[Step]]) -> None:
        self.scripts = {run_id: Script(steps) for run_id, steps in runs.items()}
        self.polls: Counter[str] = Counter()
        self.requests: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    def add_run(self, run_id: str, steps: Sequence[Step]) -> None:
        """Make a new run appear, as if someone just started it."""
        self.scripts[run_id] = Script(steps)

    @abstractmethod
    def routes(self, app: web.Application) -> None:
        """Register this API's routes on ``app``."""

    @abstractmethod
    def render(self, run_id: str, state: str) -> web.StreamResponse:
        """A successful status answer for ``run_id`` in ``state``."""

    @abstractmethod
    def error(self, status: int, message: str) -> web.Response:
        """An error answer in this API's dialect (HTML page, JSON message, 200 envelope ...)."""

    def not_found(self, run_id: str) -> web.Response:
        """The answer for an unknown run id."""
        return self.error(404, f"run {run_id} not found")

    def _recorder(self) -> Middleware:
        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            self.requests.append(f"{request.method} {request.path_qs}")
            return await handler(request)

        return record

    async def serve(self, request: web.Request, run_id: str) -> web.StreamResponse:
        """Answer a status request for ``run_id`` with the next step of its script."""
        script = self.scripts.get(run_id)
        if script is None:
            return self.not_found(run_id)
        self.polls[run_id] += 1
        step = script.advance()
        if isinstance(step, str):
            return self.render(run_id, step)
        return await self.fault(request, run_id, script, step)

    async def fault(
        self, request: web.Request, run_id: str, script: Script, fault: Fault
    ) -> web.StreamResponse:
        if fault.kind == "reset":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay_s)
            return self.render(run_id, script.last_state)
        if fault.kind == "garbage":
            return web.Response(text=GARBAGE_PAGE, content_type="text/html")
        response = self.error(fault.status, fault.message)
        if fault.retry_after is not None:
            response.headers["Retry-After"] = fault.retry_after
        return response

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving; returns the base URL a server config should use."""
        app = web.Application(middlewares=[self._recorder()])
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.url = f"http://{host}:{bound}{self.base_path}"
        return self.url

    @property
    def base_path(self) -> str:
        """Path prefix of the API on the server (``/aveksa``, ``/brpm`` ...)."""
        return ""

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
