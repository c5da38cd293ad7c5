"""BMC Release Process Management (BRPM, formerly StreamStep): plan runs through REST v1.

Status call of one run (``url`` is the application root including ``/brpm``)::

    GET {url}/v1/runs/{id}?token={token}
    Accept: application/json
    If-None-Match: {etag}            (from the previous answer, when it sent an ETag)

Discovery call of a watch with ``filters`` (:meth:`Brpm.discover`)::

    GET {url}/v1/runs?filters[aasm_state]=started&filters[plan_id]=3&token={token}
    Accept: application/json

Answers are the run object (``{"aasm_state": "started", "id": 1, "name": ..., "plan": {...},
"plan_stage": {...}, ...}``) or a bare JSON array of them. ``304 Not Modified`` repeats the last
observation. 403 means the token is invalid; 404 means an unknown run, except on the list, where
it means "no records found" and is an empty list. 422 carries ``{"attr": ["message"]}``. The
body format of other errors is undocumented; whatever text they carry is quoted, secrets masked.

The token travels in the query string, so messages name requests by ``Reply.where`` (no query)
and the token is masked in all output (its config registers it with :mod:`watcher.redact`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote

from pydantic import SecretStr

from watcher import redact
from watcher.errors import BadReplyError, PermanentError
from watcher.models import Observation, Phase, Target
from watcher.remote.client import Reply, ServerClient, error_text, expect_ok, loads
from watcher.remote.providers.base import Kind, phase_of
from watcher.schema import ServerBase

STATES: Mapping[str, Phase] = {
    "created": Phase.PENDING,
    "planned": Phase.PENDING,
    "started": Phase.RUNNING,
    "held": Phase.RUNNING,
    "blocked": Phase.RUNNING,
    "completed": Phase.SUCCEEDED,
    "cancelled": Phase.CANCELLED,
    "deleted": Phase.CANCELLED,
}

#: States in which a run waits for a person; polling goes on.
ATTENTION: Mapping[str, str] = {
    "held": "run is held: it waits for a person to resume it",
    "blocked": "run is blocked: it needs attention",
}

_JSON = "application/json"


class Config(ServerBase):
    """``kind = "brpm"``; ``url`` is the application root, e.g. ``https://host:8443/brpm``."""

    kind: Literal["brpm"]
    token: SecretStr
    """The per-user API token (from the BRPM user profile); sent as ``?token=``, masked everywhere.
    """

    def target_error(self, id: str | None, task: str | None) -> str | None:
        """A watch names a numeric run ``id``; watches with ``filters`` are checked elsewhere."""
        if task is not None:
            return "servers of kind 'brpm' have no tasks; remove 'task'"
        if not id:
            return "needs an 'id' (a run number), or 'filters' to discover runs"
        if not id.isdigit():
            return f"BRPM run ids are numbers; {id!r} is not"
        return None


class Brpm:
    """Polls one run by id, or lists runs matching filters to discover new ones."""

    def __init__(self, config: Config, http: ServerClient) -> None:
        self._config = config
        self._http = http

    async def observe(self, target: Target, memo: Mapping[str, Any]) -> Observation:
        """Read one run; a ``304`` answer to ``If-None-Match`` repeats the last observation."""
        if not target.id:
            raise PermanentError(f"{target.describe()}: a BRPM watch needs a run id")
        last = _remembered(memo)
        headers = {"Accept": _JSON}
        if last is not None:
            headers["If-None-Match"] = memo["etag"]
        reply = await self._get(f"/v1/runs/{quote(target.id, safe='')}", headers)
        if reply.status == 304 and last is not None:
            return observation_of(last, memo)
        summary = summarize(check(reply, f"run {target.id}").json(), reply.where)
        etag = reply.headers.get("ETag")  # case-insensitive headers
        return observation_of(summary, {"etag": etag, "last": summary} if etag else {})

    async def discover(
        self, filters: Mapping[str, str | int], memo: Mapping[str, Any]
    ) -> Observation:
        """List the runs matching ``filters``; ids not in ``memo["seen"]`` are ``discovered``.

        Args:
            filters: attribute -> value, sent as ``filters[attribute]=value``.
            memo: the previous observation's memo; ``seen`` lists every id found so far.

        Returns:
            ``"N matching runs"`` in phase ``running``; the memo keeps every id ever seen, so a
            run that leaves the filter and comes back is not discovered twice.
        """
        params = {f"filters[{key}]": str(value) for key, value in filters.items()}
        reply = await self._get("/v1/runs", {"Accept": _JSON}, params)
        found = [] if reply.status == 404 else run_ids(check(reply, "runs").json(), reply.where)
        previous = memo.get("seen")
        seen = [str(s) for s in previous] if isinstance(previous, list) else []
        new = [run_id for run_id in dict.fromkeys(found) if run_id not in seen]
        count = f"{len(found)} matching run{'' if len(found) == 1 else 's'}"
        return Observation(
            state=count,
            phase=Phase.RUNNING,
            detail=", ".join(f"{key}={value}" for key, value in filters.items()),
            memo={"seen": seen + new},
            discovered=tuple(new),
        )

    async def _get(
        self, path: str, headers: Mapping[str, str], params: Mapping[str, str] | None = None
    ) -> Reply:
        query = {**(params or {}), "token": self._config.token.get_secret_value()}
        return await self._http.get(f"{self._config.url}{path}", params=query, headers=headers)


def _remembered(memo: Mapping[str, Any]) -> dict[str, str] | None:
    """The last summary in ``memo`` when it also holds the ETag that goes with it."""
    last = memo.get("last")
    if not isinstance(memo.get("etag"), str) or not isinstance(last, dict):
        return None
    if not all(isinstance(last.get(key), str) for key in ("state", "label")):
        return None
    return {"state": last["state"], "label": last["label"]}


def check(reply: Reply, what: str) -> Reply:
    """Return a 2xx reply; raise what 403, 404, 422 and the rest mean for BRPM otherwise."""
    if reply.ok:
        return reply
    said = redact.scrub(error_text(reply) or reply.reason or "no message")
    if reply.status == 403:
        msg = f"token invalid: {reply.where} answered HTTP 403: {said}"
        raise PermanentError(msg, 403)
    if reply.status == 404:
        raise PermanentError(f"{what} not found: {reply.where} answered HTTP 404: {said}", 404)
    if reply.status == 422:
        msg = f"{reply.where} answered HTTP 422: {redact.scrub(validation_text(reply.text))}"
        raise PermanentError(msg, 422)
    return expect_ok(reply)


def validation_text(body: str) -> str:
    """``{"name": ["has already been taken"]}`` -> ``"name has already been taken"``.

    Rails-style ``base`` messages stand alone; an ``errors`` envelope is unwrapped; any other
    body is returned as it came.
    """
    try:
        data = loads(body)
    except ValueError:
        return body.strip()
    if isinstance(data, dict) and isinstance(data.get("errors"), dict | list):
        data = data["errors"]
    if isinstance(data, list):
        return "; ".join(str(item) for item in data)
    if not isinstance(data, dict):
        return body.strip()
    parts = []
    for attr, messages in data.items():
        for message in messages if isinstance(messages, list) else [messages]:
            parts.append(str(message) if attr == "base" else f"{attr} {message}")
    return "; ".join(parts)


def summarize(run: Any, where: str) -> dict[str, str]:
    """The parts of a run object an observation needs: its state and a readable label."""
    state = run.get("aasm_state") if isinstance(run, dict) else None
    if not isinstance(state, str):
        raise BadReplyError(f"{where}: no aasm_state in the answer")
    return {"state": state, "label": label_of(run)}


def label_of(run: Mapping[str, Any]) -> str:
    """``"Sample Run" (plan "Sample Plan", stage uat)``; ``run 7`` when the run has no name."""
    name = run.get("name")
    label = f'"{name}"' if isinstance(name, str) and name else f"run {run.get('id')}"
    parts = []
    if plan := _name(run.get("plan")):
        parts.append(f'plan "{plan}"')
    if stage := _name(run.get("plan_stage")):
        parts.append(f"stage {stage}")
    return f"{label} ({', '.join(parts)})" if parts else label


def _name(related: Any) -> str:
    name = related.get("name") if isinstance(related, dict) else None
    return name if isinstance(name, str) else ""


def observation_of(summary: Mapping[str, str], memo: Mapping[str, Any]) -> Observation:
    """The observation of a summarized run: phase from :data:`STATES`, attention, detail."""
    state, label = summary["state"], summary["label"]
    detail = f"{label} was deleted" if state.casefold() == "deleted" else label
    return Observation(
        state=state,
        phase=phase_of(STATES, state),
        detail=detail,
        memo=memo,
        attention=ATTENTION.get(state.casefold(), ""),
    )


def run_ids(runs: Any, where: str) -> list[str]:
    """The ids of a run list, as text; :class:`BadReplyError` when it is not a list of runs."""
    if not isinstance(runs, list) or not all(isinstance(r, dict) and "id" in r for r in runs):
        raise BadReplyError(f"{where}: expected a JSON array of runs with ids")
    return [str(run["id"]) for run in runs]


KIND = Kind(
    name="brpm",
    title="BMC Release Process Management",
    config=Config,
    build=Brpm,
    states=STATES,
)
