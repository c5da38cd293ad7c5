"""[api] settings, tokens from files and the environment, constant-time checks, the limiter."""

from __future__ import annotations

import base64
import heapq
import hmac
import logging
import secrets
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from watcher.api.limits import Limited, Limiter, Quota, Refusals, client_key
from watcher.config.api import (
    MIN_SECRET_BITS,
    ApiConfig,
    Scope,
    TokenConfig,
    Tokens,
    new_token,
    read_tokens,
    secret_bits,
    token_hash,
)
from watcher.metrics import Metrics

SECRET = "wt_jB4_eNnCkZu9LmxUd5E5XbiORJBbMwI5_5BUnyrEd-I"
OTHER = "wt_aJl_RFcmFES3Ax6vulloTTP6svVrS5PNAB7lQp7oivs"
HASH = token_hash(SECRET)


def api(*entries: Any) -> dict[str, Any]:
    return {"api": {"listen": "9477", "tokens": list(entries)}}


def entry(**keys: Any) -> dict[str, Any]:
    return {"name": "ci", "scope": "submit", **keys}


def only_token(data: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = data["api"]["tokens"][0]
    return result


# read_tokens


def test_a_token_file_beside_the_config_becomes_its_hash(tmp_path: Path) -> None:
    (tmp_path / "ci.token").write_text(SECRET + "\n", encoding="utf-8")
    data = read_tokens(api(entry(token_file="ci.token")), tmp_path, {})
    assert only_token(data) == {"name": "ci", "scope": "submit", "hash": HASH}
    assert SECRET not in repr(data)


def test_a_token_file_is_found_in_the_credentials_directory_first(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "ci.token").write_text(SECRET, encoding="utf-8")
    (tmp_path / "ci.token").write_text(OTHER, encoding="utf-8")
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    assert only_token(read_tokens(api(entry(token_file="ci.token")), tmp_path, env))["hash"] == HASH


def test_an_absolute_token_file_is_read_where_it_says(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.token"
    path.write_text(SECRET, encoding="utf-8")
    data = read_tokens(api(entry(token_file=str(path))), Path("/nonexistent"), {})
    assert only_token(data)["hash"] == HASH


def test_a_token_from_the_environment_becomes_its_hash(tmp_path: Path) -> None:
    data = read_tokens(api(entry(token_env="CI_TOKEN")), tmp_path, {"CI_TOKEN": SECRET})
    assert only_token(data) == {"name": "ci", "scope": "submit", "hash": HASH}
    assert SECRET not in repr(data)


def test_a_hash_given_is_kept_and_the_input_is_not_changed(tmp_path: Path) -> None:
    given = api(entry(hash=HASH), entry(name="env", token_env="CI_TOKEN"))
    data = read_tokens(given, tmp_path, {"CI_TOKEN": OTHER})
    assert data["api"]["tokens"] == [entry(hash=HASH), entry(name="env", hash=token_hash(OTHER))]
    assert given["api"]["tokens"][1] == entry(name="env", token_env="CI_TOKEN")


@pytest.mark.parametrize(
    ("tokens_entry", "env", "expected"),
    [
        (
            entry(token=SECRET),
            {},
            "api.tokens[0].token: a token is never written in the config; "
            "give token_file, token_env or hash",
        ),
        (
            entry(token_file="ci.token", hash=HASH),
            {},
            "api.tokens[0]: give one of token_file, token_env or hash, not token_file and hash",
        ),
        (entry(), {}, "api.tokens[0]: give one of token_file, token_env or hash"),
        (entry(token_file="gone"), {}, "api.tokens[0].token_file: no such file "),
        (entry(token_file=3), {}, "api.tokens[0].token_file: must be a path"),
        (entry(token_env="CI_TOKEN"), {}, "api.tokens[0].token_env: environment variable CI_TOKEN"),
        (entry(token_env="CI_TOKEN"), {"CI_TOKEN": " "}, "CI_TOKEN is not set or empty"),
        (entry(token_env=""), {}, "api.tokens[0].token_env: must be a variable name"),
        (
            entry(token_env="CI_TOKEN"),
            {"CI_TOKEN": "short-token"},
            "api.tokens[0].token_env: the token in $CI_TOKEN is too short "
            "(at least 16 characters): use `watcher token new`",
        ),
        (
            entry(token_file="short.token"),
            {},
            "api.tokens[0].token_file: the token in short.token is too short",
        ),
        (
            entry(token_env="CI_TOKEN"),
            {"CI_TOKEN": "correcthorsebatterystaple"},
            "api.tokens[0].token_env: the token in $CI_TOKEN is too easy to guess (about 62 bits;"
            " at least 100): repeats, sequences and words count for little:"
            " use `watcher token new`",
        ),
        (
            entry(token_file="weak.token"),
            {},
            "api.tokens[0].token_file: the token in weak.token is too easy to guess",
        ),
    ],
)
def test_a_token_entry_that_is_wrong_is_named(
    tmp_path: Path, tokens_entry: dict[str, Any], env: dict[str, str], expected: str
) -> None:
    (tmp_path / "short.token").write_text("short-token", encoding="utf-8")
    (tmp_path / "weak.token").write_text("Password1234567890!\n", encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        read_tokens(api(tokens_entry), tmp_path, env)
    assert expected in str(caught.value)
    for secret in (SECRET, "short-token", "correcthorse", "Password123"):
        assert secret not in str(caught.value)


GENERATED = {
    "watcher token new": lambda: new_token()[0],
    "openssl rand -hex 32": lambda: secrets.token_hex(32),
    "openssl rand -base64 32": lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
    "uuid4": lambda: str(uuid.uuid4()),
}


@pytest.mark.parametrize("make", GENERATED.values(), ids=GENERATED.keys())
def test_a_generated_secret_has_enough_bits_every_time(make: Any) -> None:
    assert min(secret_bits(make()) for _ in range(2000)) >= MIN_SECRET_BITS + 20


@pytest.mark.parametrize(
    "secret",
    [
        "correcthorsebatterystaple",
        "CorrectHorseBatteryStaple1!",
        "Password1234567890!",
        "a" * 40,
        "abc" * 14,
        "ab" * 30,
        "qwer1234" * 8,
        "0123456789" * 4,
        "MyCompanyWatcherToken2024!",
    ],
)
def test_a_secret_a_person_would_choose_has_too_few_bits(secret: str) -> None:
    assert secret_bits(secret) < MIN_SECRET_BITS


def test_a_missing_token_file_names_every_place_looked(tmp_path: Path) -> None:
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")}
    with pytest.raises(ValueError) as caught:
        read_tokens(api(entry(hash=HASH), entry(token_file="gone")), tmp_path, env)
    message = str(caught.value)
    assert message.startswith("api.tokens[1].token_file: no such file")
    assert str(tmp_path / "creds" / "gone") in message and str(tmp_path / "gone") in message


@pytest.mark.parametrize(
    "data",
    [{}, {"api": "x"}, {"api": {"listen": "9477"}}, {"api": {"tokens": "x"}}, api("x", 3)],
)
def test_malformed_shapes_are_left_for_validation(tmp_path: Path, data: dict[str, Any]) -> None:
    assert read_tokens(data, tmp_path, {}) == data


# ApiConfig


def test_read_tokens_output_validates_as_api_config(tmp_path: Path) -> None:
    data = read_tokens(api(entry(token_env="CI_TOKEN")), tmp_path, {"CI_TOKEN": SECRET})
    config = ApiConfig.model_validate(data["api"])
    assert config.listen == "127.0.0.1:9477"
    assert config.tokens == [TokenConfig(name="ci", scope="submit", hash=HASH)]
    assert not config.anonymous_read and not config.plain_http and config.trusted_proxies == []


@pytest.mark.parametrize(
    ("keys", "listen"),
    [
        ({"listen": "9477"}, "127.0.0.1:9477"),
        ({"listen": " localhost:80 "}, "localhost:80"),
        ({"listen": "127.0.0.2:0"}, "127.0.0.2:0"),
        ({"listen": "[::1]:9477"}, "[::1]:9477"),
        ({"listen": "0.0.0.0:9477", "plain_http": True}, "0.0.0.0:9477"),
        ({"listen": "[::]:9477", "plain_http": True, "trusted_proxies": ["10.0.0.1"]}, "[::]:9477"),
        ({"listen": "0.0.0.0:9477", "cert_file": "c.pem", "key_file": "k.pem"}, "0.0.0.0:9477"),
    ],
)
def test_an_api_config_that_is_safe_is_accepted(keys: dict[str, Any], listen: str) -> None:
    assert ApiConfig.model_validate(keys).listen == listen


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (
            {"listen": "0.0.0.0:9477"},
            "listen 0.0.0.0:9477 is not loopback: give cert_file and key_file, or set "
            "plain_http = true behind a proxy that terminates TLS",
        ),
        ({"listen": "[::]:9477"}, "listen [::]:9477 is not loopback"),
        # a proxy in front says who the client is, not that nobody can get past it
        ({"listen": "0.0.0.0:9477", "trusted_proxies": ["10.0.0.1"]}, "is not loopback"),
        ({"listen": "watcher.example.com:9477"}, "is not loopback"),
        ({"listen": "9477", "cert_file": "c.pem"}, "give both cert_file and key_file, or neither"),
        ({"listen": "9477", "key_file": "k.pem"}, "give both cert_file and key_file, or neither"),
        ({"listen": "nope"}, "'nope': expected host:port, [IPv6]:port or a port alone"),
        ({"listen": "70000"}, "the port must be from 0 to 65535"),
        ({"listen": "9477", "trusted_proxies": ["nginx"]}, "'nginx' is not an IP address"),
        ({"listen": "9477", "trusted_proxies": ["10.0.0.0/8"]}, "is not an IP address"),
        ({"listen": "9477", "tokens": [entry(hash="sha256:abc")]}, "64 lowercase hex digits"),
        ({"listen": "9477", "tokens": [entry(hash=HASH.upper())]}, "64 lowercase hex digits"),
        ({"listen": "9477", "tokens": [entry(token_file="x")]}, "Extra inputs"),
        ({"listen": "9477", "tokens": [entry(hash=HASH, scope="write")]}, "'read'"),
        ({"listen": "9477", "tokens": [entry(hash=HASH, name="")]}, "at least 1 character"),
        ({"listen": "9477", "tokens": [entry(hash=HASH, name="x" * 101)]}, "at most 100"),
        (
            {"listen": "9477", "tokens": [entry(hash=HASH), entry(hash=token_hash(OTHER))]},
            "tokens[1] has the name of tokens[0]",
        ),
        (
            {"listen": "9477", "tokens": [entry(hash=HASH), entry(name="b", hash=HASH)]},
            "tokens[1] is the same token as tokens[0]",
        ),
        ({"listen": "9477", "bogus": 1}, "Extra inputs"),
    ],
)
def test_an_api_config_that_is_wrong_is_refused(keys: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ApiConfig.model_validate(keys)
    assert expected in str(caught.value)
    assert "metrics" not in str(caught.value)


@pytest.mark.parametrize(
    ("hosts", "host", "answered"),
    [
        (None, "localhost", True),
        (None, "LocalHost.", True),
        (None, "127.0.0.1", True),
        (None, "10.1.2.3", True),  # an IP address is never a rebound name
        (None, "::1", True),
        (None, "[2001:db8::1]", True),
        (None, "rebound.example", False),
        (None, "localhost.rebound.example", False),
        (["Watcher.Example.COM."], "watcher.example.com", True),
        (["watcher.example.com"], "WATCHER.example.com.", True),
        (["watcher.example.com"], "localhost", False),
        ([], "localhost", False),
        ([], "127.0.0.1", True),
    ],
)
def test_the_listener_answers_its_host_names_and_ip_addresses(
    hosts: list[str] | None, host: str, answered: bool
) -> None:
    keys = {"listen": "9477"} if hosts is None else {"listen": "9477", "hosts": hosts}
    assert ApiConfig.model_validate(keys).answers(host) is answered


@pytest.mark.parametrize(
    "host", ["https://watcher.example.com", "watcher.example.com:443", "a/b", "-a.com", "é.fr", ""]
)
def test_a_host_that_is_no_host_name_is_refused(host: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ApiConfig.model_validate({"listen": "9477", "hosts": [host]})
    assert "is not a host name (no scheme, port or path" in str(caught.value)


def test_quotas_default_to_1000_active_and_60_a_minute_and_a_token_may_have_its_own() -> None:
    config = ApiConfig.model_validate(
        {
            "listen": "9477",
            "submissions_per_minute": 10,
            "tokens": [entry(hash=HASH, max_active=5), entry(name="b", hash=token_hash(OTHER))],
        }
    )
    assert ApiConfig(listen="9477").max_active_per_token == 1000
    assert ApiConfig(listen="9477").submissions_per_minute == 60
    quota = Quota(config, Refusals())
    assert (quota.max_active("ci"), quota.per_minute("ci")) == (5, 10)
    assert (quota.max_active("b"), quota.per_minute("b")) == (1000, 10)
    for wrong in ({"max_active_per_token": 0}, {"submissions_per_minute": -1}):
        with pytest.raises(ValidationError):
            ApiConfig.model_validate({"listen": "9477", **wrong})
    with pytest.raises(ValidationError):
        ApiConfig.model_validate({"listen": "9477", "tokens": [entry(hash=HASH, max_active=0)]})


class Active:
    """A store that says how many watches a token has active."""

    def __init__(self, count: int) -> None:
        self.count = count

    async def active_submitted(self, by: str) -> int:
        return self.count


async def test_a_quota_counts_a_minute_of_submissions_and_the_active_ones() -> None:
    clock, metrics = Clock(), Metrics()
    config = ApiConfig(listen="9477", submissions_per_minute=3, max_active_per_token=2)
    quota = Quota(config, Refusals(metrics=metrics, clock=clock), clock=clock)
    store: Any = Active(1)

    async def never() -> bool:
        return False

    for _ in range(3):
        await quota.admit("ci", store, never)
        clock.now += 10
    with pytest.raises(Limited) as caught:
        await quota.admit("ci", store, never)  # 3 in the last minute: the first 30 s ago
    assert caught.value.after == "30" and "3 submissions a minute" in str(caught.value)
    await quota.admit("ops", store, never)  # each token has its own
    clock.now += 40
    await quota.admit("ci", store, never)  # the first left the minute
    store.count = 2
    with pytest.raises(Limited) as caught:
        await quota.admit("ops", store, never)
    assert caught.value.after == "60" and "max_active_per_token" in str(caught.value)

    async def watched() -> bool:
        return True

    await quota.admit("ops", store, watched)  # a run it watches already: not a new one
    assert refusals(metrics)["quota"] == 2


def test_trusted_proxies_are_kept_as_the_server_sees_addresses() -> None:
    config = ApiConfig(listen="9477", trusted_proxies=["::0001", "127.0.0.1"])
    assert config.trusted_proxies == ["::1", "127.0.0.1"]


def test_no_tokens_and_no_anonymous_read_is_a_valid_config() -> None:
    assert ApiConfig(listen="9477").tokens == []


# Tokens


READER = TokenConfig(name="wall", scope="read", hash=HASH)
ADMIN = TokenConfig(name="ops", scope="admin", hash=token_hash(OTHER))
CONFIGURED = Tokens([READER, ADMIN])


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"Bearer {SECRET}", READER),
        (f"Bearer {OTHER}", ADMIN),
        (f"bearer {SECRET}", READER),
        (f" BEARER  {OTHER} ", ADMIN),
        (None, None),
        ("", None),
        (SECRET, None),
        (f"Bearer {SECRET}x", None),
        (f"Token {SECRET}", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("Bearer é", None),
        ("Bearer \udcff", None),
        ("Bearer \ud800", None),
    ],
)
def test_check_finds_only_a_bearer_token_that_is_configured(
    header: str | None, expected: TokenConfig | None
) -> None:
    assert CONFIGURED.check(header) == expected


def test_check_compares_with_every_token_even_after_a_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared: list[bytes] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return bool(real(a, b))

    monkeypatch.setattr(hmac, "compare_digest", counting)
    assert CONFIGURED.check(f"Bearer {SECRET}") == READER
    assert len(compared) == 2


def test_no_configured_tokens_find_nothing() -> None:
    assert Tokens([]).check(f"Bearer {SECRET}") is None


@pytest.mark.parametrize(
    ("scope", "needed", "allowed"),
    [
        ("read", "read", True),
        ("read", "submit", False),
        ("read", "admin", False),
        ("submit", "read", True),
        ("submit", "submit", True),
        ("submit", "admin", False),
        ("admin", "read", True),
        ("admin", "submit", True),
        ("admin", "admin", True),
    ],
)
def test_scopes_nest(scope: Scope, needed: Scope, allowed: bool) -> None:
    token = TokenConfig(name="t", scope=scope, hash=HASH)
    assert Tokens.allows(token, needed) is allowed


def test_a_new_token_is_found_by_its_hash() -> None:
    secret, hashed = new_token()
    assert secret.startswith("wt_") and len(secret) >= 40
    assert hashed == token_hash(secret)
    token = TokenConfig(name="new", scope="admin", hash=hashed)
    assert Tokens([token]).check(f"Bearer {secret}") == token
    assert new_token()[0] != secret


@pytest.mark.parametrize("name", ["ops", 'night "ops" \\ team', "équipe 🌙"])
def test_token_new_prints_an_entry_that_loads_and_takes_its_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    from watcher.cli.main import main
    from watcher.config.load import load

    assert main(["token", "new", "--name", name, "--scope", "admin"]) == 0
    out, err = capsys.readouterr()
    secret, entry = out.strip(), err[err.index("[[api.tokens]]") :]
    assert out == f"{secret}\n" and secret not in err  # the token alone: `> ci.token` works
    assert main(["token", "new", "--name", name, "--scope", "admin", "--toml"]) == 0
    toml_out, toml_err = capsys.readouterr()
    assert toml_out.startswith("[[api.tokens]]") and "wt_" in toml_err and "wt_" not in toml_out
    path = tmp_path / "w.toml"
    path.write_text(f'[daemon]\nstate = "{tmp_path / "s.db"}"\n[api]\nlisten = "9477"\n{entry}')
    (token,) = load(path).api.tokens  # type: ignore[union-attr]
    assert (token.name, token.scope) == (name, "admin")
    assert Tokens([token]).check(f"Bearer {secret}") == token


@pytest.mark.parametrize("name", ["", "a\tb", "x" * 101])
def test_token_new_refuses_a_name_the_config_would_not_take(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    from watcher.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["token", "new", "--name", name])
    assert exited.value.code == 2
    assert "--name: 1 to 100 printable characters" in capsys.readouterr().err


# Limiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(limiter: Limiter, address: str, times: int, clock: Clock, step_s: float = 1.0) -> None:
    for _ in range(times):
        limiter.failed(address)
        clock.now += step_s


def refusals(metrics: Metrics) -> dict[str, float]:
    """``watcher_api_refusals_total`` by reason, as scraped."""
    prefix = 'watcher_api_refusals_total{reason="'
    lines = [line for line in metrics.text().decode().splitlines() if line.startswith(prefix)]
    return {line[len(prefix) :].split('"')[0]: float(line.split()[-1]) for line in lines}


def test_an_address_is_free_for_max_failures_then_its_turns_are_spaced_doubling_to_the_bound() -> (
    None
):
    clock = Clock()
    limiter = Limiter(max_failures=10, first_delay_s=0.25, max_delay_s=4.0, clock=clock)
    fail(limiter, "10.0.0.1", 10, clock, step_s=0)
    assert limiter.turn("10.0.0.2") == 0  # another address is not slowed
    waits = []
    for _ in range(8):  # one client after the other, each checked in its turn and failing
        wait_s = limiter.turn("10.0.0.1")
        waits.append(wait_s)
        clock.now += wait_s
        limiter.failed("10.0.0.1")
    assert waits == [0, 0.25, 0.5, 1, 2, 4, 4, 4]


def test_a_turn_further_off_than_the_bound_is_refused_at_once_and_counted() -> None:
    clock, metrics = Clock(), Metrics()
    limiter = Limiter(max_failures=1, refusals=Refusals(metrics=metrics, clock=clock), clock=clock)
    limiter.failed("10.0.0.1")
    assert [limiter.turn("10.0.0.1") for _ in range(4)] == [0, 0.25, 0.75, 1.75]  # 4 at once
    assert limiter.turn("10.0.0.1") == 3.75  # 3.75 + 4: more than 4 s off
    with pytest.raises(Limited) as caught:
        limiter.turn("10.0.0.1")
    assert caught.value.after == "4"  # when its turn would be 4 s off
    assert str(caught.value) == "too many failed attempts from this address; try again later"
    assert refusals(metrics) == {
        "unauthorized": 1,
        "forbidden": 0,
        "too_many_failures": 1,
        "quota": 0,
    }


@pytest.mark.parametrize("parallel", [1, 16, 100])
def test_2000_wrong_tokens_take_more_than_a_minute_whatever_the_parallelism(
    parallel: int,
) -> None:
    """Attackers that never wait between attempts (a 429 retried after 50 ms): within a minute
    of the clock, far fewer than 2,000 of their tokens are checked, and every attempt counts."""
    clock, metrics = Clock(), Metrics()
    limiter = Limiter(refusals=Refusals(metrics=metrics, clock=clock), clock=clock)
    start, checked, refused = clock.now, 0, 0
    events = [(start, i, "send") for i in range(parallel)]  # (when, attacker, what)
    while (event := heapq.heappop(events))[0] < start + 60:
        clock.now, attacker, kind = event
        if kind == "check":  # its turn came: a wrong token, checked
            limiter.failed("10.0.0.1")
            checked += 1
            heapq.heappush(events, (clock.now + 0.05, attacker, "send"))
            continue
        try:
            wait_s = limiter.turn("10.0.0.1")
        except Limited:
            refused += 1
            heapq.heappush(events, (clock.now + 0.05, attacker, "send"))
        else:
            heapq.heappush(events, (clock.now + wait_s, attacker, "check"))
    assert checked < 2000 * 60 / 60
    assert checked <= 10 + 20  # 10 free, then 0.25 s, 0.5 s, 1 s, 2 s and every 4 s
    counted = refusals(metrics)
    assert counted["unauthorized"] == checked and counted["too_many_failures"] == refused


def test_the_penalty_is_forgotten_after_a_window_without_failures() -> None:
    clock = Clock()
    limiter = Limiter(max_failures=3, window_s=60, clock=clock)
    fail(limiter, "10.0.0.1", 3, clock, step_s=0)
    assert limiter.turn("10.0.0.1") == 0 and limiter.turn("10.0.0.1") == 0.25
    clock.now += 59
    assert limiter.turn("10.0.0.1") == 0  # still penalised, but its turn has come
    assert limiter.turn("10.0.0.1") == 1  # the next one after it, 1 s on
    clock.now += 1
    assert limiter.turn("10.0.0.1") == 0  # a minute without a failure
    fail(limiter, "10.0.0.1", 2, clock, step_s=0)
    assert limiter.turn("10.0.0.1") == 0  # counting from one again: free
    assert limiter.turn("10.0.0.1") == 0


def test_addresses_are_counted_apart_and_an_ipv6_client_by_its_64() -> None:
    clock = Clock()
    limiter = Limiter(max_failures=3, clock=clock)
    fail(limiter, "10.0.0.1", 3, clock, step_s=0)
    fail(limiter, "10.0.0.2", 2, clock, step_s=0)
    for i in range(3):
        limiter.failed(f"2001:db8:1:2::{i + 1}")  # one host, rotating its address
    assert limiter.turn("10.0.0.1") == 0 and limiter.turn("10.0.0.1") > 0
    assert limiter.turn("10.0.0.2") == 0 and limiter.turn("10.0.0.2") == 0
    assert limiter.turn("2001:db8:1:2::ff") == 0 and limiter.turn("2001:db8:1:2:ab::1") > 0
    assert limiter.turn("2001:db8:1:3::1") == 0 and limiter.turn("2001:db8:1:3::1") == 0
    assert client_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert client_key("::1") == "::1" and client_key("proxy") == "proxy"


def test_at_most_max_addresses_are_tracked_and_the_one_that_failed_longest_ago_goes_first() -> None:
    clock = Clock()
    limiter = Limiter(max_failures=2, max_addresses=3, clock=clock)
    fail(limiter, "a", 2, clock)
    fail(limiter, "b", 2, clock)
    fail(limiter, "c", 1, clock)
    fail(limiter, "d", 1, clock)
    assert limiter.turn("a") == 0 and limiter.turn("a") == 0  # forgotten
    assert limiter.turn("b") == 0 and limiter.turn("b") > 0
    for i in range(10_000):
        limiter.failed(f"10.{i}")
    assert len(limiter._addresses) == 3


def records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "watcher.api.limits"]


def test_failures_are_logged_once_a_minute_with_names_and_never_a_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    clock = Clock()
    limiter = Limiter(clock=clock)
    wrong = "wt_guessed-token-0123456789"
    assert CONFIGURED.check(f"Bearer {wrong}") is None
    limiter.failed("10.0.0.1", None)
    assert records(caplog) == ["API: 1 failed attempt from 10.0.0.1"]

    reader = CONFIGURED.check(f"Bearer {SECRET}")
    assert reader is not None and not Tokens.allows(reader, "admin")
    for i in range(7):
        clock.now += 5
        limiter.failed(f"10.0.1.{i}", reader.name if i % 2 else None)
    assert len(records(caplog)) == 1
    clock.now += 30
    limiter.failed("10.0.0.1", "ops")
    assert records(caplog)[1:] == [
        "API: 8 failed attempts from 10.0.1.0, 10.0.1.1, 10.0.1.2, 10.0.1.3, 10.0.1.4"
        " and 3 more (tokens: wall, ops)"
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    assert SECRET not in caplog.text and wrong not in caplog.text and OTHER not in caplog.text


def test_flush_logs_what_is_pending_only_when_due_or_forced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    clock = Clock()
    limiter = Limiter(clock=clock)
    limiter.flush(force=True)
    assert records(caplog) == []
    limiter.failed("10.0.0.1")
    limiter.failed("10.0.0.2")
    limiter.flush()
    assert len(records(caplog)) == 1
    clock.now += 60
    limiter.flush()
    assert records(caplog)[1:] == ["API: 1 failed attempt from 10.0.0.2"]
    limiter.failed("10.0.0.3")
    limiter.flush(force=True)
    assert records(caplog)[2:] == ["API: 1 failed attempt from 10.0.0.3"]


def test_an_address_or_name_with_a_newline_cannot_forge_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    Limiter(clock=Clock()).failed("10.0.0.1\nWARNING forged", "a\rb")
    (line,) = records(caplog)
    assert "\n" not in line and "\r" not in line
    assert "10.0.0.1\\nWARNING forged" in line and "a\\rb" in line  # shown escaped
