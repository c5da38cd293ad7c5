"""A small generic JSON status server, for the ``http`` provider's tests and demo.

Serves ``GET /jobs/{id}`` as ``{"job": {"id": ..., "status": <state>, "message": ...}}``; errors
are JSON ``{"message": ...}``. Optionally requires ``Authorization: Bearer {token}``. A matching
config::

    kind = "http"
    path = "/jobs/{id}"
    state = "job.status"
    detail = "job.message"
    success = ["done"]
    failure = ["failed"]
    cancelled = ["cancelled"]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aiohttp import web

from watcher.simulators.base import Simulator, Step

MESSAGES: Mapping[str, str] = {
    "queued": "waiting for a worker",
    "running": "working",
    "done": "all good",
    "failed": "the job crashed",
    "cancelled": "stopped by a person",
}


class JsonStatusSimulator(Simulator):
    """Serves scripted jobs at ``GET /jobs/{id}``.

    Args:
        runs: the script of each job, by id.
        token: when set, requests must carry ``Authorization: Bearer {token}`` (else 401).

    Attributes:
        headers: the headers of every status request received, for assertions on auth.
    """

    def __init__(
        self, runs: Mapping[str, Sequence[Step]] | None = None, *, token: str | None = None
    ) -> None:
        super().__init__(runs or {})
        self.token = token
        self.headers: list[Mapping[str, str]] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/jobs/{job_id}", self._job)

    async def _job(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(dict(request.headers))
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return self.error(401, "missing or wrong token")
        return await self.serve(request, request.match_info["job_id"])

    def render(self, run_id: str, state: str) -> web.StreamResponse:
        job = {"id": run_id, "status": state, "message": MESSAGES.get(state, "")}
        return web.json_response({"job": job})

    def not_found(self, run_id: str) -> web.Response:
        return self.error(404, f"no job {run_id}")

    def error(self, status: int, message: str) -> web.Response:
        return web.json_response({"message": message}, status=status)
