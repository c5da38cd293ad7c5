"""The shared token cache: the renewal rule, one login for many watches, masking of tokens."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from watcher import redact
from watcher.remote.providers.auth import Token, TokenCache, renew_time

START = 1_700_000_000.0


class Clock:
    """Seconds since the epoch that move only when a test says so."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class Server:
    """A login endpoint that counts calls and issues numbered tokens living ``lifetime_s``."""

    def __init__(self, clock: Clock, lifetime_s: float | None = 3600.0) -> None:
        self.clock = clock
        self.lifetime_s = lifetime_s
        self.logins = 0
        self._serial = itertools.count(1)

    async def login(self) -> Token:
        self.logins += 1
        await asyncio.sleep(0)  # let other watches queue up behind the lock
        expires = None if self.lifetime_s is None else self.clock() + self.lifetime_s
        return Token(f"token-{next(self._serial):04d}-of-the-server", expires)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.mark.parametrize(
    ("lifetime_s", "renewed_after_s"),
    [
        (3600.0, 3240.0),  # 10% (360 s) is more than 60 s: keep 360 s in hand
        (300.0, 240.0),  # 10% is 30 s: keep the 60 s minimum
        (120.0, 60.0),  # 60 s is exactly half the lifetime
        (60.0, 30.0),  # 60 s would be the whole life: use half of it
        (10.0, 5.0),  # a short-lived token is still used for half its life
        (0.0, 0.0),  # already expired: renew at once
    ],
)
def test_token_is_renewed_when_less_than_the_margin_is_left(
    lifetime_s: float, renewed_after_s: float
) -> None:
    assert renew_time(START, START + lifetime_s) == START + renewed_after_s


def test_token_without_expiry_is_never_renewed_by_time() -> None:
    assert renew_time(START, None) is None


@pytest.mark.parametrize(("lifetime_s", "renewed_after_s"), [(3600.0, 3240.0), (60.0, 30.0)])
async def test_cache_keeps_the_token_until_its_renewal_time(
    clock: Clock, lifetime_s: float, renewed_after_s: float
) -> None:
    server = Server(clock, lifetime_s)
    cache = TokenCache(server.login, clock=clock)
    first = await cache.get()
    clock.now = START + renewed_after_s - 1
    assert await cache.get() == first and server.logins == 1
    clock.now = START + renewed_after_s
    assert await cache.get() != first and server.logins == 2


async def test_short_lived_token_is_not_renewed_on_every_poll(clock: Clock) -> None:
    server = Server(clock, lifetime_s=10.0)
    cache = TokenCache(server.login, clock=clock)
    for _ in range(5):  # five polls a second apart, all within the first half of its life
        await cache.get()
        clock.now += 1.0
    assert server.logins == 1


async def test_concurrent_first_gets_log_in_once(clock: Clock) -> None:
    server = Server(clock)
    cache = TokenCache(server.login, clock=clock)
    tokens = await asyncio.gather(*(cache.get() for _ in range(20)))
    assert server.logins == 1 and len(set(tokens)) == 1


async def test_twenty_watches_refused_the_same_token_renew_it_once(clock: Clock) -> None:
    server = Server(clock, lifetime_s=None)
    cache = TokenCache(server.login, clock=clock)
    stale = await cache.get()
    fresh = await asyncio.gather(*(cache.refused(stale) for _ in range(20)))
    assert server.logins == 2 and set(fresh) == {await cache.get()} and stale not in fresh


async def test_refusal_of_a_token_already_replaced_does_not_log_in(clock: Clock) -> None:
    server = Server(clock, lifetime_s=None)
    cache = TokenCache(server.login, clock=clock)
    stale = await cache.get()
    current = await cache.refused(stale)
    assert await cache.refused(stale) == current and server.logins == 2


async def test_refused_static_token_is_kept_and_never_logs_in() -> None:
    cache = TokenCache.static("configured-token-1234")
    assert not cache.renewable
    assert await cache.refused("configured-token-1234") == "configured-token-1234"


async def test_failed_login_leaves_no_token_and_is_tried_again(clock: Clock) -> None:
    server = Server(clock)
    attempts = 0

    async def flaky() -> Token:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("login endpoint down")
        return await server.login()

    cache = TokenCache(flaky, clock=clock)
    with pytest.raises(RuntimeError):
        await cache.get()
    assert (await cache.get()).startswith("token-") and attempts == 2


async def test_every_token_obtained_is_masked_in_output(clock: Clock) -> None:
    cache = TokenCache(Server(clock).login, clock=clock)
    token = await cache.get()
    renewed = await cache.refused(token)
    assert (
        redact.scrub(f"Bearer {token} then {renewed}") == f"Bearer {redact.MASK} then {redact.MASK}"
    )


def test_a_server_config_masks_its_secrets_as_soon_as_it_is_validated() -> None:
    from watcher.remote.providers.gardin import Config

    Config(kind="gardin", client_id="c", client_secret="hunter2-xyz-secret")
    text = "password hunter2-xyz-secret rejected by abc"
    assert redact.scrub(text) == "password *** rejected by abc"
