"""A simulator of RSA Governance & Lifecycle's ``command.submit`` servlet (``getRunStatus``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aiohttp import web

from watcher.simulators.base import Simulator, Step

STARTED = "2026-01-15 10:00:00"
ERROR_PAGE = "<html>\n<head>\n<title>Error</title>\n</head>\n<body>{message}</body>\n</html>"


class RsaSimulator(Simulator):
    """Serves ``GET /aveksa/command.submit?cmd=getRunStatus&run-id=...&format=json``."""

    def __init__(
        self, runs: Mapping[str, Sequence[Step]] | None = None, token: str = "rsa-token"
    ) -> None:
        super().__init__(runs or {})
        self.token = token

    @property
    def base_path(self) -> str:
        return "/aveksa"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/aveksa/command.submit", self._command)

    async def _command(self, request: web.Request) -> web.StreamResponse:
        query = request.query_string
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self.error(401, f"The token is invalid or expired Query String={query}")
        if request.query.get("cmd") != "getRunStatus":
            return self.error(404, f"Unknown command Query String={query}")
        run_id = request.query.get("run-id")
        if not run_id:
            return self.error(412, f"The parameter run-id is required. Query String={query}")
        if run_id not in self.scripts:
            return self.error(404, f"The run-id {run_id} is invalid. Query String={query}")
        return await self.serve(request, run_id)

    def render(self, run_id: str, state: str) -> web.StreamResponse:
        data = {"type": "getRunStatus", "overall-status": state, "start-time": STARTED}
        if state in ("Completed", "Aborted"):
            data["completed-time"] = "2026-01-15 10:04:06"
        return web.json_response({"data": data})

    def error(self, status: int, message: str) -> web.Response:
        return web.Response(
            status=status, text=ERROR_PAGE.format(message=message), content_type="text/html"
        )
