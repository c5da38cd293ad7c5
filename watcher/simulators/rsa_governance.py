"""A simulator of RSA Governance & Lifecycle's ``command.submit`` servlet.

Serves ``GET /aveksa/command.submit?cmd=getRunStatus&run-id=...&format=json`` and the two logins,
``POST /aveksa/command.submit?cmd=loginUser`` (XML fragment body) and ``?cmd=loginTrustedApp``
(``ClientId``/``ClientSecret`` headers). Logged-in tokens expire after ``token_ttl_s``; the
configured static token never does. Tokens are read from ``Authorization: Bearer`` or, as older
clients send them, a ``token`` query parameter. Errors are HTML pages, as the real servlet's.
"""

from __future__ import annotations

import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence

from aiohttp import web

from watcher.simulators.base import Simulator, Step

STARTED = "2026-01-15 10:00:00"
ERROR_PAGE = "<html>\n<head>\n<title>Error</title>\n</head>\n<body>{message}</body>\n</html>"
BAD_USER = "User could not be validated. The username or password may be incorrect."
BAD_APP = "Application could not be validated"
BAD_TOKEN = "The token is invalid or expired"


class RsaSimulator(Simulator):
    """Serves run statuses to holders of the static token or of a token from a login.

    Args:
        runs: the script of each run, by run id.
        token: a static token that is always accepted.
        username: the user loginUser accepts.
        password: the password of ``username``.
        client_id: the trusted application loginTrustedApp accepts.
        client_secret: the secret of ``client_id``.
        token_ttl_s: how long a token from a login stays valid.
        clock: seconds since the epoch; tests inject one to expire tokens without waiting.

    Attributes:
        logins: successful logins of either kind.
        login_types: the ``Content-Type`` of every loginUser request.
    """

    def __init__(
        self,
        runs: Mapping[str, Sequence[Step]] | None = None,
        token: str = "rsa-token",
        *,
        username: str = "rsa-admin",
        password: str = "rsa-password",
        client_id: str = "rsa-app",
        client_secret: str = "rsa-app-secret",
        token_ttl_s: float = 1800.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(runs or {})
        self.token = token
        self.username = username
        self.password = password
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl_s = token_ttl_s
        self.clock = clock
        self.logins = 0
        self.login_types: list[str] = []
        self.issued: dict[str, float] = {}

    @property
    def base_path(self) -> str:
        return "/aveksa"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/aveksa/command.submit", self._command)
        app.router.add_post("/aveksa/command.submit", self._login)

    def expire_tokens(self) -> None:
        """Make every token issued by a login expire now, as after a period of inactivity."""
        self.issued = dict.fromkeys(self.issued, 0.0)

    def _valid(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token if scheme == "Bearer" else request.query.get("token", "")
        return token == self.token or self.clock() < self.issued.get(token, 0.0)

    async def _command(self, request: web.Request) -> web.StreamResponse:
        query = request.query_string
        if not self._valid(request):
            return self.error(401, f"{BAD_TOKEN} Query String={query}")
        if request.query.get("cmd") != "getRunStatus":
            return self.error(404, f"Unknown command Query String={query}")
        run_id = request.query.get("run-id")
        if not run_id:
            return self.error(412, f"The parameter run-id is required. Query String={query}")
        if run_id not in self.scripts:
            return self.error(404, f"The run-id {run_id} is invalid. Query String={query}")
        return await self.serve(request, run_id)

    async def _login(self, request: web.Request) -> web.StreamResponse:
        cmd, query = request.query.get("cmd"), request.query_string
        if cmd == "loginUser":
            self.login_types.append(request.headers.get("Content-Type", ""))
            if _fragment(await request.text()) != (self.username, self.password):
                return self.error(401, f"{BAD_USER} Query String={query}")
            return web.json_response({"data": {"type": cmd, "token": self._issue("ws")}})
        if cmd == "loginTrustedApp":
            pair = (request.headers.get("ClientId"), request.headers.get("ClientSecret"))
            if pair != (self.client_id, self.client_secret):
                return self.error(401, f"{BAD_APP} Query String={query}")
            return web.json_response({"token": self._issue("ta")})
        return self.error(404, f"Unknown command Query String={query}")

    def _issue(self, prefix: str) -> str:
        self.logins += 1
        token = f"{prefix}{secrets.token_hex(10)}:-{secrets.token_hex(4)}:{secrets.token_hex(6)}"
        self.issued[token] = self.clock() + self.token_ttl_s
        return token

    def render(self, run_id: str, state: str) -> web.StreamResponse:
        data = {"type": "getRunStatus", "overall-status": state, "start-time": STARTED}
        if state in ("Completed", "Aborted"):
            data["completed-time"] = "2026-01-15 10:04:06"
        return web.json_response({"data": data})

    def error(self, status: int, message: str) -> web.Response:
        return web.Response(
            status=status, text=ERROR_PAGE.format(message=message), content_type="text/html"
        )


def _fragment(body: str) -> tuple[str | None, str | None]:
    """``(username, password)`` from a loginUser body; ``(None, None)`` if it is not well formed."""
    try:
        root = ET.fromstring(f"<login>{body}</login>")
    except ET.ParseError:
        return None, None
    return root.findtext("username"), root.findtext("password")
