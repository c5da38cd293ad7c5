"""Cluster membership on its own: the share of the open watches, and what a renewal lets go of.

The instances sharing a real database are in test_ha.py (processes) and test_postgres.py
(leases); here the store and the engine are stand-ins, so the arithmetic reads as a table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

import pytest

from watcher.service.cluster import Cluster, open_watches
from watcher.stores import Change
from watcher.stores.pgnotify import MAX_PAYLOAD, heard, payload, split_listen

LEASE_S = 30.0


class Members:
    """A store as the cluster sees it: heartbeats, counts, and what a renewal lost."""

    def __init__(self, beats: list[float], counts: dict[str, int], lost: set[str]) -> None:
        self.beats, self.counts_, self.lost = beats, counts, lost

    async def instances(self) -> list[tuple[str, float, float]]:
        return [(f"i{n}", 0.0, beat) for n, beat in enumerate(self.beats)]

    async def counts(self) -> dict[str, int]:
        return self.counts_

    async def renew(self) -> set[str]:
        return self.lost


class Holder:
    """The engine as the cluster sees it."""

    def __init__(self, sheds: int = 0) -> None:
        self.share: int | None = None
        self.let_go: list[str] = []
        self.sheds = sheds

    def lost(self, keys: Collection[str]) -> None:
        self.let_go += sorted(keys)

    async def shed(self) -> int:
        return self.sheds

    async def cancelled(self, key: str) -> None:
        self.let_go.append(f"cancelled {key}")

    def tick(self) -> None:
        self.let_go.append("claimed")


def cluster(store: Members, holder: Holder) -> Cluster:
    return Cluster(store, holder, LEASE_S)  # type: ignore[arg-type]


def test_open_watches_leave_out_the_ended_ones() -> None:
    assert open_watches({"Running": 3, "succeeded": 5, "failed": 1, "pending": 2}) == 5


@pytest.mark.parametrize(
    ("beats", "open_", "share"),
    [
        ([100.0], 10, None),  # alone: no limit
        ([100.0, 99.0], 10, 5),
        ([100.0, 99.0, 98.0], 10, 4),  # rounded up: every watch has a holder
        ([100.0, 99.0, 100.0 - LEASE_S], 10, 5),  # a lease without a beat: not counted
        ([100.0, 100.0 - LEASE_S * 2 / 3], 10, None),  # two thirds of a lease behind: gone
        ([100.0, 99.0], 0, 0),
    ],
)
async def test_the_share_is_an_equal_part_among_the_live_instances(
    beats: list[float], open_: int, share: int | None
) -> None:
    holder = Holder()
    await cluster(Members(beats, {"Running": open_, "succeeded": 7}, set()), holder).balance()
    assert holder.share == share


async def test_a_renewal_tells_the_holder_what_it_lost_then_balances_and_sheds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "watcher")
    holder = Holder(sheds=2)
    renewing = cluster(Members([100.0, 100.0], {"Running": 8}, {"b", "a"}), holder)
    await renewing._renew()
    assert holder.let_go == ["a", "b"]  # at once; the share is worked out beside the renewal
    assert renewing._balancing is not None
    await renewing._balancing
    assert holder.share == 4
    assert "let go of 2 watches: cancelled, or held by another instance now" in caplog.text
    assert "let go of 2 watches for the other instances to take" in caplog.text


async def test_a_share_that_cannot_be_read_holds_up_no_renewal() -> None:
    # cut off by a partition, a read of the heartbeats may hang for a minute: the renewals go
    # on meanwhile, and say that the leases are at risk
    class Hangs(Members):
        renewals = 0

        async def instances(self) -> list[tuple[str, float, float]]:
            await asyncio.Event().wait()
            return []

        async def renew(self) -> set[str]:
            self.renewals += 1
            return set()

    members = Hangs([100.0, 100.0], {"Running": 8}, set())
    renewing = cluster(members, Holder())
    for _ in range(3):
        await asyncio.wait_for(renewing._renew(), 5)
    assert members.renewals == 3
    renewing.stop()


async def test_a_failed_renewal_is_logged_and_lets_nothing_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Down(Members):
        async def renew(self) -> Any:
            raise OSError("connection refused")

    holder = Holder(sheds=2)
    await cluster(Down([100.0], {"Running": 1}, set()), holder)._renew()
    assert holder.let_go == [] and holder.share is None
    assert "renewing this instance's leases failed" in caplog.text


@pytest.mark.parametrize(
    ("changes", "did", "share"),
    [
        ([Change("cancel", ("k1", "k1/run"))], ["cancelled k1", "cancelled k1/run"], None),
        ([Change("submit"), Change("submit")], ["claimed"], 4),  # shares again, then a claim
        ([Change("join")], [], 4),  # worked out again; nothing to claim
        ([Change("leave")], ["claimed"], 4),
        ([Change("silence")], [], None),  # read where it is used: nothing to do
        ([Change("any")], ["a", "claimed"], 4),  # a renewal: what it lost, then a claim
        ([Change("cancel")], ["a"], 4),  # keys too long for a notice: a renewal finds them
    ],
)
async def test_a_change_heard_is_acted_on(
    changes: list[Change], did: list[str], share: int | None
) -> None:
    holder = Holder()
    members = cluster(Members([100.0, 100.0], {"Running": 8}, {"a"}), holder)
    members.start()
    for change in changes:
        members.heard(change)
    await members._reacting  # type: ignore[misc]
    members.stop()
    assert sorted(holder.let_go) == sorted(did) and holder.share == share


@pytest.mark.parametrize(
    ("url", "without", "listen"),
    [
        ("postgresql://h/db", "postgresql://h/db", True),
        ("postgresql://h/db?listen=off", "postgresql://h/db", False),
        (
            "postgresql://h1,h2/db?sslmode=require&listen=false",
            "postgresql://h1,h2/db?sslmode=require",
            False,
        ),
        (
            "postgresql://h/db?listen=on&application_name=x",
            "postgresql://h/db?application_name=x",
            True,
        ),
    ],
)
def test_listen_is_taken_out_of_the_url(url: str, without: str, listen: bool) -> None:
    assert split_listen(url) == (without, listen)


def test_a_notice_carries_its_change_and_a_long_one_goes_without_its_keys() -> None:
    change = Change("cancel", ("gardin//one", "gardin//one/run"))
    assert heard(f"7 {payload(change)}") == (7, change)
    many = Change("cancel", tuple(f"key{i:05}" for i in range(MAX_PAYLOAD)))
    assert heard(f"8 {payload(many)}") == (8, Change("cancel"))
    assert heard("garbage") == (0, Change("any"))
