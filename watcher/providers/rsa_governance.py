"""RSA Governance & Lifecycle (formerly Aveksa): collection and review-generation runs.

Status call::

    GET {url}/command.submit?cmd=getRunStatus&run-id={id}&format=json
    Authorization: Bearer {token}

Answer: ``{"data": {"type": "getRunStatus", "overall-status": "Running", "start-time": ...,
"completed-time": ...}}``. Errors come as HTML pages whose ``<body>`` holds the sentence, e.g.
``The run-id 144444 is invalid.`` (404) or ``The parameter run-id is required.`` (412).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import SecretStr

from watcher.client import ServerClient, expect_ok
from watcher.errors import BadReplyError
from watcher.models import Observation, Phase, Target
from watcher.providers.base import Kind, phase_of
from watcher.schema import ServerBase

STATES: Mapping[str, Phase] = {
    "New": Phase.PENDING,
    "Running": Phase.RUNNING,
    "Completed": Phase.SUCCEEDED,
    "Aborted": Phase.FAILED,
}


class Config(ServerBase):
    """``kind = "rsa_governance"``; ``url`` is the application root, e.g. ``https://host/aveksa``."""

    kind: Literal["rsa_governance"]
    token: SecretStr


class RsaGovernance:
    """Polls ``getRunStatus`` for one run id."""

    def __init__(self, config: Config, http: ServerClient) -> None:
        self._config = config
        self._http = http

    async def observe(self, target: Target, memo: Mapping[str, Any]) -> Observation:
        reply = expect_ok(
            await self._http.get(
                f"{self._config.url}/command.submit",
                params={"cmd": "getRunStatus", "run-id": target.id or "", "format": "json"},
                headers={
                    "Authorization": f"Bearer {self._config.token.get_secret_value()}",
                    "Accept": "application/json",
                },
            )
        )
        data = reply.json()
        run = data.get("data") if isinstance(data, dict) else None
        state = run.get("overall-status") if isinstance(run, dict) else None
        if not isinstance(state, str):
            raise BadReplyError(f"{reply.where}: no data.overall-status in the answer")
        return Observation(state=state, phase=phase_of(STATES, state))


KIND = Kind(
    name="rsa_governance",
    title="RSA Governance & Lifecycle",
    config=Config,
    build=RsaGovernance,
    states=STATES,
)
