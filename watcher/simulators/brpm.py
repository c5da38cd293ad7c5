"""A simulator of BMC Release Process Management's REST v1 runs.

Serves, under the ``/brpm`` web context::

    GET /brpm/v1/runs/{id}?token=...        one run (or /v1/runs/{id}.json); one script step
    GET /brpm/v1/runs?filters[attr]=value&token=...     runs matching every filter

Filters may also come as a JSON body on the GET, ``{"filters": {"aasm_state": "started"}}``, as
BRPM's own curl examples send them; query filters win over body filters. A filter compares the
text of an attribute of the run object (``aasm_state``, ``name``, ``plan_id``, ``id`` ...;
``stage_id`` means ``plan_stage_id``); a filter on anything else, the date filters included,
matches nothing. No match answers 404, as BRPM does.

The list never consumes script steps: it *peeks*, showing each run as its status call last showed
it (the first scripted state before any status call). Scripted faults apply only to status calls.

Bodies are compact JSON in the seed's key order (the seed's run is exactly 460 bytes) with an
``ETag``; a status call whose ``If-None-Match`` matches gets ``304 Not Modified``. JSON is served
only to ``Accept: application/json`` or a ``.json`` suffix (406 otherwise). A wrong or missing
token gets 403. The real error body format is undocumented: errors here are ``{"error": "..."}``,
422 is Rails' ``{"base": ["..."]}``, and the 404 of an unknown run echoes the request with its
query string, token included, as a test that clients mask it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from watcher.simulators.base import Simulator, Step

_COMPACT = (",", ":")
_STAMP = "2013-02-08T11:17:45-05:00"
_ALIASES = {"stage_id": "plan_stage_id"}


@dataclass(frozen=True, slots=True)
class RunInfo:
    """The attributes of a simulated run besides its state; the defaults are the seed's run."""

    name: str = "Sample Run"
    plan_id: int = 1
    plan_name: str = "Sample Plan"
    plan_stage_id: int = 1
    stage_name: str = "uat"
    owner_id: int = 1


class BrpmSimulator(Simulator):
    """Serves BRPM's ``/brpm/v1/runs`` and ``/brpm/v1/runs/{id}`` for scripted runs.

    Attributes:
        token: the API token requests must carry as ``?token=``.
        infos: name, plan and stage of each run, by id.
        filters_seen: the filters of every list request, in order.
        not_modified: how many status calls were answered ``304 Not Modified``.
    """

    def __init__(
        self,
        runs: Mapping[str, Sequence[Step]] | None = None,
        token: str = "brpm-token",
        infos: Mapping[str, RunInfo] | None = None,
    ) -> None:
        super().__init__(runs or {})
        self.token = token
        self.infos: dict[str, RunInfo] = dict(infos or {})
        self.filters_seen: list[dict[str, str]] = []
        self.not_modified = 0

    @property
    def base_path(self) -> str:
        return "/brpm"

    def add_run(self, run_id: str, steps: Sequence[Step], info: RunInfo | None = None) -> None:
        """Make a new run appear, as if someone just created it; ``info`` names it."""
        super().add_run(run_id, steps)
        if info is not None:
            self.infos[run_id] = info

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/brpm/v1/runs", self._list)
        app.router.add_get("/brpm/v1/runs.json", self._list)
        app.router.add_get("/brpm/v1/runs/{id}", self._run)

    async def _run(self, request: web.Request) -> web.StreamResponse:
        path_id = request.match_info["id"]
        run_id = path_id.removesuffix(".json")
        refused = self._refusal(request, json_suffix=path_id != run_id)
        if refused is not None:
            return refused
        if run_id not in self.scripts:
            return self.error(404, f"Couldn't find Run with id={run_id} ({request.path_qs})")
        response = await self.serve(request, run_id)
        etag = response.headers.get("ETag")
        if response.status == 200 and etag and request.headers.get("If-None-Match") == etag:
            self.not_modified += 1
            return web.Response(status=304, headers={"ETag": etag})
        return response

    async def _list(self, request: web.Request) -> web.StreamResponse:
        refused = self._refusal(request, json_suffix=request.path.endswith(".json"))
        if refused is not None:
            return refused
        filters = {**await _body_filters(request), **_query_filters(request)}
        self.filters_seen.append(filters)
        runs = [self.run_object(run_id, s.last_state) for run_id, s in self.scripts.items()]
        matching = [run for run in runs if _matches(run, filters)]
        if not matching:
            return self.error(404, "No records found")
        return _json_response(json.dumps(matching, separators=_COMPACT))

    def _refusal(self, request: web.Request, *, json_suffix: bool) -> web.Response | None:
        if request.query.get("token") != self.token:
            return self.error(403, "Access denied: the API token is invalid")
        if not json_suffix and "json" not in request.headers.get("Accept", ""):
            return self.error(406, "ask for JSON: Accept: application/json or a .json suffix")
        return None

    def run_object(self, run_id: str, state: str) -> dict[str, Any]:
        """The run as BRPM shows it, in the seed's key order."""
        info = self.infos.get(run_id, RunInfo())
        return {
            "aasm_state": state,
            "created_at": _STAMP,
            "description": None,
            "duration": None,
            "end_at": None,
            "id": int(run_id) if run_id.isdigit() else run_id,
            "name": info.name,
            "owner_id": info.owner_id,
            "plan_id": info.plan_id,
            "plan_stage_id": info.plan_stage_id,
            "requestor_id": info.owner_id,
            "start_at": None,
            "updated_at": _STAMP,
            "plan": {"aasm_state": "created", "id": info.plan_id, "name": info.plan_name},
            "plan_stage": {"id": info.plan_stage_id, "name": info.stage_name},
            "plan_members": [
                {
                    "id": 1,
                    "position": 1,
                    "request": {"aasm_state": "created", "id": 3, "name": "Sample Request 2"},
                }
            ],
        }

    def render(self, run_id: str, state: str) -> web.StreamResponse:
        return _json_response(json.dumps(self.run_object(run_id, state), separators=_COMPACT))

    def error(self, status: int, message: str) -> web.Response:
        body = {"base": [message]} if status == 422 else {"error": message}
        return web.json_response(body, status=status)


def _json_response(body: str) -> web.Response:
    etag = '"' + hashlib.md5(body.encode(), usedforsecurity=False).hexdigest() + '"'
    return web.Response(
        text=body,
        content_type="application/json",
        charset="utf-8",
        headers={"ETag": etag, "Cache-Control": "max-age=0, private, must-revalidate"},
    )


def _query_filters(request: web.Request) -> dict[str, str]:
    return {
        key[len("filters[") : -1]: value
        for key, value in request.query.items()
        if key.startswith("filters[") and key.endswith("]")
    }


async def _body_filters(request: web.Request) -> dict[str, str]:
    if not request.can_read_body:
        return {}
    try:
        data = json.loads(await request.text())
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "body is not JSON"}') from None
    filters = data.get("filters") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in filters.items()} if isinstance(filters, dict) else {}


def _matches(run: Mapping[str, Any], filters: Mapping[str, str]) -> bool:
    for key, value in filters.items():
        attr = _ALIASES.get(key, key)
        if attr not in run or str(run[attr]) != value:
            return False
    return True
