"""``/api/v1/acks``: acknowledging what lasts (``POST``, a ``submit`` token or higher) and
listing the acknowledgements in force (``GET``), as ``watcher ack`` and ``watcher acks`` do.

Who acknowledged is the token's name; what is acknowledged and when it stops counting is
:mod:`watcher.notify.acks`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from watcher.api.documents import JSON_VERSION, ack_entry
from watcher.api.v1 import Comment, Refused, Text
from watcher.notify.acks import AckStore, acknowledge, acknowledged
from watcher.stores import Reads


class NewAck(BaseModel):
    """``POST /api/v1/acks``: the fields of ``watcher ack``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    match: Text
    comment: Comment = ""


async def ack(store: AckStore, body: Mapping[str, Any], by: str) -> dict[str, Any]:
    """Acknowledge what lasts of the watches ``match`` names, as ``by`` (the token's name);
    :class:`Refused` 404 if nothing of theirs lasts."""
    given = NewAck.model_validate(body)
    made = await acknowledge(store, given.match, by, given.comment, time.time())
    if not made:
        raise Refused(404, "nothing lasts now (unreachable, attention, overdue) that match names")
    return {"version": JSON_VERSION, "acks": [ack_entry(a) for a in made]}


async def acks(store: Reads) -> dict[str, Any]:
    """The acknowledgements of conditions that still last, oldest first."""
    return {"version": JSON_VERSION, "acks": [ack_entry(a) for a in await acknowledged(store)]}
