"""watches.toml loading: expansion, defaults, secrets from files, and errors that say where."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcher import redact
from watcher.config.load import Config, load
from watcher.errors import ConfigError

ROOT = Path(__file__).parent.parent

BASE = """
[channels.team]
url = "json://127.0.0.1:9/hook"

[servers.gov]
kind = "rsa_governance"
url = "https://rsa.example.com/aveksa"
token = "t0ken-value"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "watches.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str, **env: str) -> Config:
    return load(write(tmp_path, text), environ=env)


def error_of(tmp_path: Path, text: str, **env: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text, **env)
    return str(caught.value)


def test_the_shipped_example_is_valid() -> None:
    config = load(ROOT / "watches.toml", environ={})
    assert {w.server for w in config.watches} >= {"governance", "gis", "gardin", "rpm"}
    assert config.watches[0].notify == ["team", "oncall"]


def test_defaults_apply_to_every_watch_and_a_watch_overrides_them(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        BASE
        + """
[defaults]
interval = "2m"
notify = ["team"]
[[watches]]
server = "gov"
id = "1"
[[watches]]
server = "gov"
id = 2
interval = 30
""",
    )
    assert [w.interval for w in config.watches] == [120.0, 30.0]
    assert [w.notify for w in config.watches] == [["team"], ["team"]]
    assert config.watches[1].id == "2"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ('"90s"', 90),
        ('"15m"', 900),
        ('"2h"', 7200),
        ('"1d"', 86400),
        ("45", 45),
        ("0.5", 0.5),
        ('"250ms"', 0.25),
        ('"1h30m"', 5400),  # as watcher prints durations
        ('"1d02h"', 93600),
        ('"2m 5s"', 125),
    ],
)
def test_durations_accept_units_and_plain_seconds(
    tmp_path: Path, text: str, seconds: float
) -> None:
    config = load_text(tmp_path, BASE + f'[[watches]]\nserver="gov"\nid="1"\ntimeout={text}\n')
    assert config.watches[0].timeout == seconds


def test_a_bad_duration_names_the_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, BASE + '[[watches]]\nserver="gov"\nid="1"\ninterval="soon"\n')
    assert "watches[0].interval" in message and "'soon' is not a duration" in message


def test_a_config_error_names_the_watch_once(tmp_path: Path) -> None:
    text = BASE + '[[watches]]\nserver="gov"\nid="1"\n[[watches]]\nname="nightly import"\n'
    message = error_of(tmp_path, text + 'server="gov"\nid="2"\ninterval="1h30"\n')
    assert message.count("watches[1] (nightly import).interval:") == 1
    message = error_of(tmp_path, text + 'server="nope"\nid="2"\n')
    assert "watches[1] (nightly import).server: no server named 'nope'" in message


def test_environment_variables_expand_everywhere(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        BASE.replace("t0ken-value", "${RSA_TOKEN}")
        + """
[[watches]]
server = "gov"
id = "${RUN_ID}"
name = "run ${RUN_ID:-none} of ${TEAM:-ops}"
""",
        RSA_TOKEN="from-env-123",
        RUN_ID="5733",
    )
    server = config.servers["gov"]
    assert server.token.get_secret_value() == "from-env-123"  # type: ignore[union-attr]
    assert config.watches[0].id == "5733"
    assert config.watches[0].name == "run 5733 of ops"


def test_an_unset_variable_is_an_error_naming_the_key_that_needs_it(tmp_path: Path) -> None:
    message = error_of(tmp_path, BASE.replace("t0ken-value", "${RSA_TOKEN}"))
    assert message.endswith("servers.gov.token: environment variable RSA_TOKEN is not set")
    assert "watches.toml" in message


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ("[daemon]\nstat = 'x'\n", "daemon.stat: unknown key"),
        ("[defaults]\nintervall = '1m'\n", "defaults.intervall: unknown key"),
        ("[channels.c]\nurl = 'json://h'\ntitel = 'x'\n", "channels.c.titel: unknown key"),
        ("[[watches]]\nserver='gov'\nid='1'\nnotfy=['team']\n", "watches[0].notfy: unknown key"),
        (
            "[servers.x]\nkind='gardin'\ntoken='abcd'\nverify_tsl=false\n",
            "servers.x.verify_tsl: unknown key",
        ),
        ("[watcher]\n", "watcher: unknown key"),
    ],
)
def test_unknown_keys_are_errors_with_their_path(tmp_path: Path, extra: str, where: str) -> None:
    assert where in error_of(tmp_path, BASE + extra)


def test_unknown_server_kind_lists_the_known_ones(tmp_path: Path) -> None:
    message = error_of(tmp_path, BASE + "[servers.x]\nkind='jenkins'\nurl='http://h'\n")
    assert "servers.x" in message and "rsa_governance, arcgis, gardin, brpm, http" in message


def test_a_watch_naming_an_unknown_server_or_channel_is_an_error(tmp_path: Path) -> None:
    message = error_of(tmp_path, BASE + "[[watches]]\nserver='gv'\nid='1'\n")
    assert "watches[0].server: no server named 'gv' (known: gov)" in message
    message = error_of(tmp_path, BASE + "[[watches]]\nserver='gov'\nid='1'\nnotify=['tem']\n")
    assert "watches[0].notify: no channel named 'tem'" in message


def test_a_watch_without_the_id_its_system_needs_is_an_error(tmp_path: Path) -> None:
    assert "watches[0]: needs an 'id'" in error_of(tmp_path, BASE + "[[watches]]\nserver='gov'\n")


def test_the_same_run_watched_twice_is_an_error(tmp_path: Path) -> None:
    text = BASE + "[[watches]]\nserver='gov'\nid='1'\n[[watches]]\nserver='gov'\nid='1'\nname='b'\n"
    assert "watches[1] watches the same run as watches[0]" in error_of(tmp_path, text)


def test_invalid_toml_says_where(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[servers.x\nkind='a'\n")
    assert "not valid TOML" in message and "line 1" in message


def test_a_missing_file_is_an_error_not_defaults(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load(tmp_path / "nope.toml")


def test_an_unknown_placeholder_in_a_template_is_an_error(tmp_path: Path) -> None:
    text = BASE.replace('url = "json', 'title = "{name} is {staus}"\nurl = "json')
    message = error_of(tmp_path, text)
    assert "channels.team.title: unknown placeholder 'staus'" in message


def test_a_channel_needs_a_url(tmp_path: Path) -> None:
    assert "channels.c: needs 'url' or 'urls'" in error_of(tmp_path, BASE + "[channels.c]\n")


def test_secrets_can_come_from_files_in_the_credentials_directory(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "rsa_token").write_text("file-token-xyz\n", encoding="utf-8")
    text = BASE.replace('token = "t0ken-value"', 'token_file = "rsa_token"')
    config = load_text(tmp_path, text, CREDENTIALS_DIRECTORY=str(creds))
    assert config.servers["gov"].token.get_secret_value() == "file-token-xyz"  # type: ignore[union-attr]


def test_a_secret_file_beside_the_config_works_and_a_missing_one_is_named(tmp_path: Path) -> None:
    (tmp_path / "token.txt").write_text("beside-token", encoding="utf-8")
    text = BASE.replace('token = "t0ken-value"', 'token_file = "token.txt"')
    assert load_text(tmp_path, text).servers["gov"].token.get_secret_value() == "beside-token"  # type: ignore[union-attr]
    message = error_of(tmp_path, BASE.replace('token = "t0ken-value"', 'token_file = "gone"'))
    assert "servers.gov.token_file: no such file" in message


def test_a_secret_given_both_inline_and_as_file_is_an_error(tmp_path: Path) -> None:
    message = error_of(tmp_path, BASE + 'token_file = "x"\n')
    assert "servers.gov: give either 'token' or 'token_file', not both" in message


def test_daemon_keys_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHER_STATE", "/var/lib/x/state.db")
    config = load_text(tmp_path, BASE + '[daemon]\nstate = "file.db"\n')
    assert config.daemon.state == "/var/lib/x/state.db"


def test_state_file_defaults_to_the_systemd_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHER_STATE", raising=False)
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/watcher")
    assert load_text(tmp_path, BASE).daemon.state == "/var/lib/watcher/watcher.db"


def test_loaded_secrets_are_masked_from_then_on(tmp_path: Path) -> None:
    load_text(
        tmp_path, BASE.replace("json://127.0.0.1:9/hook", "json://user:hook-pass@127.0.0.1:9/h")
    )
    assert "t0ken-value" not in redact.scrub("Authorization: Bearer t0ken-value")
    assert "hook-pass" not in redact.scrub("posting to json://user:hook-pass@127.0.0.1:9/h")


def test_validation_errors_never_echo_secret_values(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        BASE.replace('kind = "rsa_governance"', 'kind = "gardin"').replace(
            'token = "t0ken-value"', 'token = "s3cret-value"\nclient_id = "c"'
        ),
    )
    assert "s3cret-value" not in message


@pytest.mark.parametrize(
    ("url", "hidden", "kept"),
    [
        ("mailtos://bot:Sup3rSecret@example.com?to=a@example.com", "Sup3rSecret", "example.com"),
        (
            "slack://T1234567890ABCDEFG/B1234567890ABCDEFG/xoxbverysecrettoken1234/#ops",
            "xoxbverysecrettoken1234",
            "#ops",
        ),
        (
            "json://hooks.example.com/p?+X-Token=abcdefghijklmnopqrstu",
            "abcdefghijklmnopqrstu",
            "hooks.example.com",
        ),
    ],
)
def test_secret_parts_of_channel_urls_are_masked(url: str, hidden: str, kept: str) -> None:
    redact.register_url(url)
    said = redact.scrub(f"delivery to {hidden} failed near {kept}")
    assert hidden not in said and kept in said


def test_a_console_channel_is_not_treated_as_a_secret() -> None:
    redact.register_url("console://")
    assert redact.scrub("channel console: console://") == "channel console: console://"
