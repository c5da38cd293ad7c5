"""Watches that set only an id and a name are copies of one validated watch: the same models,
and the same errors, as validating each of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from watcher.config import shapes
from watcher.config.load import load
from watcher.config.watches import WatchConfig
from watcher.errors import ConfigError

DEFAULTS = {"server": "gov", "interval": 30.0, "notify": ["team"], "timeout": 600.0}

HEAD = """
[daemon]
state = "{state}"

[channels.team]
url = "json://127.0.0.1:9/hook"

[servers.gov]
kind = "rsa_governance"
url = "http://127.0.0.1:9/aveksa"
token = "t0ken-value"

[defaults]
{defaults}
"""


def each_validated(entries: list[dict[str, Any]]) -> list[WatchConfig]:
    return [WatchConfig.model_validate({**DEFAULTS, **entry}) for entry in entries]


@pytest.mark.parametrize(
    "entries",
    [
        [{"id": "1"}, {"id": "2", "name": "second"}, {}, {"name": "only a name"}],
        [{"id": "1", "name": "first"}, {"id": "2"}],
        [{"id": "1"}, {"id": "2", "interval": 60.0}, {"id": "3"}],  # one of its own
    ],
)
def test_copies_are_the_models_validation_gives(entries: list[dict[str, Any]]) -> None:
    found = shapes.merged(entries, DEFAULTS)
    models = [w if isinstance(w, WatchConfig) else WatchConfig.model_validate(w) for w in found]
    expected = each_validated(entries)
    assert models == expected
    assert [m.model_fields_set for m in models] == [e.model_fields_set for e in expected]
    assert [m.model_dump(exclude_unset=True) for m in models] == [
        e.model_dump(exclude_unset=True) for e in expected
    ]


def test_entries_of_other_shapes_are_left_to_the_file_validation() -> None:
    found = shapes.merged([{"id": 5}, {"id": "6", "task": "t"}, "not a table"], DEFAULTS)
    assert found == [{**DEFAULTS, "id": 5}, {**DEFAULTS, "id": "6", "task": "t"}, "not a table"]


def write(tmp_path: Path, defaults: str, watches: str) -> Path:
    path = tmp_path / "watches.toml"
    path.write_text(HEAD.format(state=tmp_path / "state.db", defaults=defaults) + watches)
    return path


def test_many_copies_load_as_each_entry_would(tmp_path: Path) -> None:
    watches = "".join(f'\n[[watches]]\nid = "{i}"\n' for i in range(300))
    config = load(write(tmp_path, 'server = "gov"\nnotify = ["team"]', watches))
    assert [w.id for w in config.watches] == [str(i) for i in range(300)]
    assert {w.notify == ["team"] and w.server == "gov" for w in config.watches} == {True}


@pytest.mark.parametrize(
    ("defaults", "watches", "says"),
    [
        # [defaults] without a server: every copy is told, by its place
        ("", '[[watches]]\nid = "1"\n[[watches]]\nid = "2"\n', "watches[1].server"),
        ('server = "nowhere"', '[[watches]]\nid = "1"\n', "watches[0].server: no server named"),
        (
            'server = "gov"',
            '[[watches]]\nid = "1"\n[[watches]]\nid = "2"\n[[watches]]\nid = "1"\n',
            "watches[2] watches the same run as watches[0]",
        ),
        ('server = "gov"', '[[watches]]\nid = "1"\n[[watches]]\nid = ["x"]\n', "watches[1].id"),
        ('server = "gov"\ninterval = "1h"', '[[watches]]\nid = "1"\n', "max_interval"),
    ],
)
def test_a_wrong_copy_is_reported_by_its_place(
    tmp_path: Path, defaults: str, watches: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=says.replace("[", r"\[").replace("]", r"\]")):
        load(write(tmp_path, defaults, watches))
