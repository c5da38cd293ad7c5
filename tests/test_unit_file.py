"""systemd/watcher.service keeps its contract, and systemd/README.md tells how to install it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from watcher.api import conns

ROOT = Path(__file__).parent.parent
UNIT_PATH = ROOT / "systemd" / "watcher.service"
UNIT_TEXT = UNIT_PATH.read_text(encoding="utf-8")
README = (ROOT / "systemd" / "README.md").read_text(encoding="utf-8")


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections of key -> every value given (systemd allows repeated keys), in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"line {number}: {raw!r} is outside a section"
        assert "=" in line, f"line {number}: {raw!r} is not KEY=VALUE"
        assert not line.endswith("\\"), f"line {number}: no continuation lines, please"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


UNIT = parse_unit(UNIT_TEXT)
SERVICE = UNIT["Service"]


def one(key: str) -> str:
    values = SERVICE.get(key)
    assert values, f"[Service] has no {key}="
    assert len(values) == 1, f"[Service] sets {key}= {len(values)} times: {values}"
    return values[0]


def test_sections() -> None:
    assert set(UNIT) == {"Unit", "Service", "Install"}
    assert UNIT["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Type", "notify"),  # notify-reload needs systemd >= 253; Debian 12 has 252
        ("NotifyAccess", "main"),
        ("Restart", "on-failure"),
        ("DynamicUser", "yes"),
        ("StateDirectory", "watcher"),  # $STATE_DIRECTORY/watcher.db is the default state file
        ("ConfigurationDirectory", "watcher"),  # $CONFIGURATION_DIRECTORY/watches.toml
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("UMask", "0077"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("Environment", "PYTHONUNBUFFERED=1"),
    ],
)
def test_service_setting(key: str, value: str) -> None:
    assert one(key) == value


def test_reload_sends_sighup_to_the_main_process() -> None:
    assert re.fullmatch(r"/bin/kill -(HUP|SIGHUP|s HUP) \$MAINPID", one("ExecReload"))


def test_exec_start_runs_the_daemon_from_the_venv_without_a_config_path() -> None:
    argv = one("ExecStart").split()
    assert argv == ["/opt/watcher/bin/watcher", "run"]  # config via $CONFIGURATION_DIRECTORY


@pytest.mark.parametrize("key", ["WatchdogSec", "TimeoutStopSec", "RestartSec"])
def test_timers_are_set(key: str) -> None:
    assert re.fullmatch(r"[1-9]\d*(s|min)?", one(key)), f"{key}={one(key)}"


def test_open_files_suffice_for_the_api_connections_and_the_polling() -> None:
    assert int(one("LimitNOFILE")) >= conns.TOTAL + conns.RESERVE_FILES


def test_network_is_limited_to_what_a_poller_needs() -> None:
    assert set(one("RestrictAddressFamilies").split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}


def test_system_calls_are_filtered() -> None:
    filters = SERVICE["SystemCallFilter"]
    assert filters[0] == "@system-service"
    denied = {name for f in filters[1:] if f.startswith("~") for name in f[1:].split()}
    assert {"@privileged", "@resources"} <= denied
    assert one("SystemCallArchitectures") == "native"


def test_secrets_come_from_credentials_and_an_optional_env_file() -> None:
    examples = re.findall(r"^#\s*LoadCredential=(\w+):(/\S+)$", UNIT_TEXT, flags=re.MULTILINE)
    assert examples, "the unit should show a commented LoadCredential= example"
    assert all(path.endswith(f"/{name}") for name, path in examples)
    assert one("EnvironmentFile").startswith("-/etc/watcher/")  # "-": may be absent


def test_readme_gives_every_command_the_unit_depends_on() -> None:
    venv = Path(one("ExecStart").split()[0]).parent.parent  # /opt/watcher/bin/watcher
    credentials = {
        str(Path(path).parent) for _, path in re.findall(r"LoadCredential=(\w+):(/\S+)", UNIT_TEXT)
    }
    needed = [
        f"python3 -m venv {venv}",
        f"{venv}/bin/pip install",
        "install -m 644 systemd/watcher.service /etc/systemd/system/",
        f"install -d -m 755 /etc/{one('ConfigurationDirectory')}",
        f"/etc/{one('ConfigurationDirectory')}/watches.toml",
        *(f"install -d -m 700 {d}" for d in sorted(credentials)),
        "LoadCredential=",
        "_file = ",
        "systemctl daemon-reload",
        "systemctl enable --now watcher",
        "systemctl reload watcher",
        "systemctl status watcher",
        "journalctl -u watcher",
        f"/var/lib/{one('StateDirectory')}",
        f"/var/lib/private/{one('StateDirectory')}",
        "watcher status",
        "systemd-analyze security",
    ]
    missing = [text for text in needed if text not in README]
    assert not missing, f"systemd/README.md does not mention {missing}"


def test_readme_states_the_measured_security_score() -> None:
    score = re.search(r"rates the unit \*\*(\d+\.\d) \w+\*\*", README)
    assert score, "systemd/README.md should give the systemd-analyze security score"
    assert float(score.group(1)) <= 2.0


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (apt-get install systemd); .ci/run installs it",
)
def test_systemd_analyze_verify_prints_nothing(tmp_path: Path) -> None:
    # verify exits 0 on unknown keys and bad values, so any output is a failure; it needs
    # ExecStart's binary to exist, hence a copy that runs this interpreter.
    copy = tmp_path / "watcher.service"
    copy.write_text(
        re.sub(r"^ExecStart=\S+", f"ExecStart={sys.executable}", UNIT_TEXT, flags=re.MULTILINE),
        encoding="utf-8",
    )
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
