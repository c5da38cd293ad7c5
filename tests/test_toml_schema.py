"""watches.schema.json: made from the config models, kept in the repository, read by editors."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.systems import SYSTEMS, config_text, server_table, watch_table
from watcher.cli.main import main
from watcher.config.load import load
from watcher.config.toml_schema import SCHEMA_FILE, text

ROOT = Path(__file__).parent.parent
REGENERATE = f"watcher schema > {SCHEMA_FILE}"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((ROOT / SCHEMA_FILE).read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def problems(validator: jsonschema.Draft202012Validator, config: Any) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(config)]


def test_the_kept_schema_is_what_watcher_schema_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    kept = (ROOT / SCHEMA_FILE).read_text("utf-8")
    assert printed == text()
    assert kept == printed, f"{SCHEMA_FILE} is out of date with the models: run `{REGENERATE}`"


def test_the_shipped_config_names_the_schema_and_is_valid(
    validator: jsonschema.Draft202012Validator,
) -> None:
    shipped = (ROOT / "watches.toml").read_text("utf-8")
    assert shipped.splitlines()[0] == f"#:schema ./{SCHEMA_FILE}"
    assert problems(validator, tomllib.loads(shipped)) == []


@pytest.mark.parametrize("kind", sorted(SYSTEMS))
def test_the_tests_example_configs_that_load_are_valid(
    validator: jsonschema.Draft202012Validator, tmp_path: Path, kind: str
) -> None:
    servers = server_table(kind, "remote", "http://127.0.0.1:9/api")
    watches = watch_table(kind, "remote", "7", name="nightly") + watch_table(kind, "remote", "8")
    written = config_text(tmp_path / "s.db", "json://127.0.0.1:9/hook", servers, watches)
    path = tmp_path / "w.toml"
    path.write_text(written, "utf-8")
    load(path, environ={})  # watcher takes it ...
    assert problems(validator, tomllib.loads(written)) == []  # ... and so does the schema


@pytest.fixture
def shipped() -> dict[str, Any]:
    return tomllib.loads((ROOT / "watches.toml").read_text("utf-8"))


def test_a_misspelled_key_in_a_watch_is_refused(
    validator: jsonschema.Draft202012Validator, shipped: dict[str, Any]
) -> None:
    shipped["watches"][0]["intervall"] = "1m"
    assert problems(validator, shipped) == [
        "$.watches[0]: Additional properties are not allowed ('intervall' was unexpected)"
    ]


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("watches", 0, "interval"), True),  # a duration, not a boolean
        (("watches", 0, "interval"), "soon"),
        (("watches", 0, "interval"), 0),
        (("defaults", "backoff"), "fast"),
        (("watches", 0, "notify"), "team"),  # a list of names
        (("servers", "governance", "max_concurrency"), 0),
        (("servers", "governance", "kind"), "jenkins"),
        (("channels", "team", "on"), ["failed", "exploded"]),
    ],
)
def test_a_wrong_type_or_value_is_refused(
    validator: jsonschema.Draft202012Validator,
    shipped: dict[str, Any],
    where: tuple[str | int, ...],
    value: object,
) -> None:
    config = copy.deepcopy(shipped)
    table = config
    for part in where[:-1]:
        table = table[part]
    table[where[-1]] = value
    assert problems(validator, config) != []


@pytest.mark.parametrize("duration", [90, 0.5, "90s", "15m", "1h30m", "1d", "250ms", " 2h ", "30"])
def test_durations_take_what_the_models_take(
    validator: jsonschema.Draft202012Validator, shipped: dict[str, Any], duration: object
) -> None:
    shipped["watches"][0]["timeout"] = duration
    assert problems(validator, shipped) == []


def test_what_is_written_before_loading_is_valid(
    validator: jsonschema.Draft202012Validator,
) -> None:
    """A secret from a file, a watch's server from [defaults], a token by its file, a number
    as a run id: the file as written, not as the models see it after loading."""
    written = {
        "defaults": {"server": "rpm", "expect": "auto"},
        "servers": {"rpm": {"kind": "brpm", "url": "https://rpm.example.com", "token_file": "t"}},
        "watches": [{"id": 4711}],
        "api": {
            "listen": "127.0.0.1:9477",
            "tokens": [{"name": "ci", "scope": "submit", "token_file": "ci.token"}],
        },
    }
    assert problems(validator, written) == []
    both = copy.deepcopy(written)
    both["servers"]["rpm"]["token"] = "t0ken"  # either the token or its file, not both
    assert problems(validator, both) != []
    neither = copy.deepcopy(written)
    del neither["servers"]["rpm"]["token_file"]
    assert problems(validator, neither) != []
    no_source = copy.deepcopy(written)
    del no_source["api"]["tokens"][0]["token_file"]
    assert problems(validator, no_source) != []
