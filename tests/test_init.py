"""``watcher init``: a commented watches.toml that passes ``watcher check`` as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from watcher.cli.init import SCHEMA_LINE, TEMPLATE
from watcher.cli.main import main
from watcher.config.api import new_token

#: the commented TOML of the template (tables and keys), not its prose
EXAMPLE = re.compile(r"^# (?=\[|[a-z_]+ = )", flags=re.MULTILINE)


def test_init_writes_a_file_that_check_passes_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    written = (tmp_path / "watches.toml").read_text(encoding="utf-8")
    assert written == TEMPLATE and written.splitlines()[0] == SCHEMA_LINE
    assert "wrote watches.toml" in capsys.readouterr().out
    assert main(["check", "-c", "watches.toml"]) == 0
    assert "server builds: http" in capsys.readouterr().out


def test_init_refuses_to_overwrite_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mine.toml"
    path.write_text("# my own\n", encoding="utf-8")
    assert main(["init", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path} exists" in err and "--force" in err
    assert path.read_text(encoding="utf-8") == "# my own\n"
    assert main(["init", str(path), "--force"]) == 0
    assert path.read_text(encoding="utf-8") == TEMPLATE


def test_the_commented_examples_are_valid_once_uncommented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("CI_TOKEN", "RSA_TOKEN", "ARCGIS_USER", "ARCGIS_PASSWORD", "BRPM_TOKEN"):
        monkeypatch.setenv(name, "a-secret-value")
    monkeypatch.setenv("GARDIN_CLIENT_ID", "client")
    monkeypatch.setenv("GARDIN_CLIENT_SECRET", "a-secret-value")
    monkeypatch.setenv("SLACK_TOKENS", "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX")
    (tmp_path / "ci.token").write_text(new_token()[0], encoding="utf-8")
    path = tmp_path / "watches.toml"
    path.write_text(EXAMPLE.sub("", TEMPLATE), encoding="utf-8")
    assert main(["check", "-c", str(path)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert all(f"server {name}:" in out for name in ("builds", "governance", "gis", "rpm"))
    assert "channel team:" in out and "nightly build" in out
