"""A simulator of the ArcGIS Enterprise admin API's task runs, with portal token login.

Serves, under ``/arcgis``::

    GET  /arcgis/admin/system/tasks/{task}/runs?f=json[&start=N]   runs, newest first
    GET  /arcgis/admin/system/tasks/{task}/runs/{runId}?f=json      one run: consumes a step
    POST /arcgis/sharing/rest/generateToken                         username/password -> token

Runs are keyed ``"task/run"``. Listing a task shows each run in its current state (the state its
last single-run request served, or its first state) and consumes no steps, so a run only moves
on when someone asks for it by id; scripted faults apply to single-run requests only.

Errors use ArcGIS's HTTP 200 envelope (``text/plain``): ``{"status": "error", "messages": [...],
"code": N}``, or with ``dialect="portal"`` ``{"error": {"code": N, "message": ..., "details":
[]}}``. A missing token answers 499 ``Token Required``; a wrong or expired one 498 ``Token
Expired.``. The codes in ``status_codes`` come with that HTTP status instead of 200, the envelope
as body, as servers do that answer an expired token with HTTP 498. ``Fault.http`` with 502, 503
or 504 answers a plain HTTP error, as the web adaptor or load balancer in front would. A request
without ``f=json`` gets an HTML page.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from aiohttp import web

from watcher.simulators.base import Fault, Script, Simulator, Step

FIRST_RUN = datetime(2021, 4, 22, 0, 0, 30)
GATEWAY_STATUSES = frozenset({502, 503, 504})
RESULTS = {"succeeded": "GP Jobs have been cleaned.", "failed": "The task failed."}
HTML_PAGE = (
    "<html><head><title>ArcGIS Enterprise Administrator Directory</title></head>"
    "<body><h2>Runs</h2><p>This is the HTML view; ask for f=json.</p></body></html>"
)


def java_date(when: datetime, space: str = " ") -> str:
    """``Apr 22, 2021, 3:00:31 AM``: Java's medium format; ``space`` goes before AM/PM."""
    hour = when.hour % 12 or 12
    meridian = "AM" if when.hour < 12 else "PM"
    return f"{when:%b} {when.day}, {when.year}, {hour}:{when:%M:%S}{space}{meridian}"


def _bearer(value: str) -> str:
    return value.removeprefix("Bearer ").strip() if value.startswith("Bearer ") else ""


class ArcGisSimulator(Simulator):
    """Serves scripted task runs keyed ``"task/run"``, newest first by when they were added.

    Args:
        runs: steps per ``"task/run"`` key; each run is created an hour after the previous one.
        tasks: task ids that exist without any run yet.
        username: the account that may log in.
        password: its password.
        token_ttl_s: how long tokens issued by generateToken are accepted.
        static_token: a token accepted forever without login, if given.
        clock: epoch seconds now; inject one to expire tokens without waiting.
        page_size: runs per list page (``start``/``nextStart`` paging).
        dialect: ``"admin"`` or ``"portal"`` error envelope.
        date_space: what goes before AM/PM (``"\\u202f"`` imitates JDK 20 and later).
        status_codes: error codes also sent as the HTTP status, e.g. ``{498, 499}``.

    Attributes:
        logins: successful generateToken calls.
        rejected: answers with code 498 or 499.
        transports: requests per token transport (``"query"``, ``"header"``).
    """

    def __init__(
        self,
        runs: Mapping[str, Sequence[Step]] | None = None,
        *,
        tasks: Iterable[str] = (),
        username: str = "admin",
        password: str = "arcgis-password",
        token_ttl_s: float = 3600.0,
        static_token: str | None = None,
        clock: Callable[[], float] = time.time,
        page_size: int = 100,
        dialect: Literal["admin", "portal"] = "admin",
        date_space: str = " ",
        status_codes: Iterable[int] = (),
    ) -> None:
        super().__init__({})
        self.username, self.password, self.static_token = username, password, static_token
        self.token_ttl_s, self.clock, self.page_size = token_ttl_s, clock, page_size
        self.dialect, self.date_space = dialect, date_space
        self.status_codes = frozenset(status_codes)
        self.tasks = set(tasks)
        self.created: dict[str, datetime] = {}
        self.tokens: dict[str, float] = {}
        self.logins = self.rejected = 0
        self.transports: Counter[str] = Counter()
        for key, steps in (runs or {}).items():
            self.add_run(key, steps)

    @property
    def base_path(self) -> str:
        return "/arcgis/admin"

    def add_run(self, run_id: str, steps: Sequence[Step]) -> None:
        """Make run ``"task/run"`` appear, created after every run already there."""
        super().add_run(run_id, steps)
        self.tasks.add(run_id.split("/", 1)[0])
        self.created[run_id] = FIRST_RUN + timedelta(hours=len(self.created))

    def revoke_tokens(self) -> None:
        """Forget every issued token, as a restarted portal or a changed key would."""
        self.tokens.clear()

    def routes(self, app: web.Application) -> None:
        runs = "/arcgis/admin/system/tasks/{task}/runs"
        app.router.add_get(runs, self._list)
        app.router.add_get(runs + "/{run}", self._one)
        app.router.add_post("/arcgis/sharing/rest/generateToken", self._generate_token)

    async def _generate_token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if form.get("username") != self.username or form.get("password") != self.password:
            return self._portal_error(
                400, "Unable to generate token.", "Invalid username or password."
            )
        token = f"tok-{secrets.token_hex(12)}"
        self.tokens[token] = self.clock() + self.token_ttl_s
        self.logins += 1
        expires_ms = int(self.tokens[token] * 1000)
        return web.json_response({"token": token, "expires": expires_ms, "ssl": False})

    async def _list(self, request: web.Request) -> web.StreamResponse:
        task = request.match_info["task"]
        if refused := self._refuse(request):
            return refused
        if task not in self.tasks:
            return self.error(404, f"Task '{task}' does not exist.")
        mine = (key for key in self.scripts if key.startswith(f"{task}/"))
        keys = sorted(mine, key=lambda key: self.created[key], reverse=True)
        start = int(request.query.get("start", "0"))
        page = keys[start : start + self.page_size]
        more = start + len(page) < len(keys)
        body = {
            "result": [self._run(key, self.scripts[key].last_state) for key in page],
            "total": len(keys),
            "num": len(page),
            "start": start,
            "nextStart": start + len(page) if more else 0,
        }
        return web.json_response(body)

    async def _one(self, request: web.Request) -> web.StreamResponse:
        if refused := self._refuse(request):
            return refused
        return await self.serve(
            request, f"{request.match_info['task']}/{request.match_info['run']}"
        )

    def _refuse(self, request: web.Request) -> web.Response | None:
        """The answer to a request without ``f=json`` or a valid token, else ``None``."""
        if request.query.get("f") not in ("json", "pjson"):
            return web.Response(text=HTML_PAGE, content_type="text/html")
        header = _bearer(request.headers.get("X-Esri-Authorization", ""))
        token = request.query.get("token") or header
        if not token:
            return self.error(499, "Token Required")
        self.transports["header" if header else "query"] += 1
        if token != self.static_token and self.tokens.get(token, 0.0) <= self.clock():
            return self.error(498, "Token Expired.")
        return None

    def _run(self, key: str, state: str) -> dict[str, Any]:
        task, run = key.split("/", 1)
        created = java_date(self.created[key], self.date_space)
        return {
            "result": RESULTS.get(state, ""),
            "task": {"id": task, "taskId": task, "taskType": "CleanGPJobs", "taskState": "active"},
            "created": created,
            "modified": created,
            "runId": run,
            "url": "",
            "status": state,
        }

    def render(self, run_id: str, state: str) -> web.StreamResponse:
        return web.json_response(self._run(run_id, state))

    def not_found(self, run_id: str) -> web.Response:
        return self.error(404, f"Run '{run_id.split('/', 1)[-1]}' does not exist.")

    def error(self, status: int, message: str) -> web.Response:
        if status in (498, 499):
            self.rejected += 1
        if self.dialect == "portal":
            return self._portal_error(status, message)
        body = {"status": "error", "messages": [message], "code": status}
        return web.json_response(body, status=self._http_status(status), content_type="text/plain")

    def _portal_error(self, code: int, message: str, *details: str) -> web.Response:
        body = {"error": {"code": code, "message": message, "details": details}}
        return web.json_response(body, status=self._http_status(code))

    def _http_status(self, code: int) -> int:
        return code if code in self.status_codes else 200

    async def fault(
        self, request: web.Request, run_id: str, script: Script, fault: Fault
    ) -> web.StreamResponse:
        if fault.kind != "http" or fault.status not in GATEWAY_STATUSES:
            return await super().fault(request, run_id, script, fault)
        response = web.Response(status=fault.status, text=fault.message)
        if fault.retry_after is not None:
            response.headers["Retry-After"] = fault.retry_after
        return response
