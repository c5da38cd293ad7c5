"""``watcher demo``: the real engine against local simulators of the four APIs, no accounts.

It starts the simulators on loopback, writes the watches.toml they need into a temporary
directory, prints it, and runs ``watcher run --once`` on it with a ``console://`` channel: polls,
backoff, a 503 with ``Retry-After``, token logins and renewals, one failed run, and the
notifications, in well under a minute.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from watcher.cli import demo_serve
from watcher.cli.status import report
from watcher.config.load import load
from watcher.service.daemon import Options, run
from watcher.simulators.arcgis import ArcGisSimulator
from watcher.simulators.base import Fault, Simulator
from watcher.simulators.brpm import BrpmSimulator
from watcher.simulators.gardin import GardinSimulator
from watcher.simulators.rsa_governance import RsaSimulator

QUERY = "4DDC21D9-E30C-458A-80E2-642CA3238541"
EXPECTED_EXIT = 1  # what `run --once` gives for the demo: its Gardin query fails on purpose

CONFIG = """\
# The configuration watcher demo runs with: four simulated systems on loopback.
[daemon]
state = "{state}"

[defaults]
interval = "{interval}s"
backoff = 1.5
max_interval = "{max_interval}s"
timeout = "5m"
notify = ["console"]

[channels.console]
url = "console://"

[servers.governance]
kind = "rsa_governance"
url = "{rsa}"
username = "rsa-admin"
password = "rsa-password"

[servers.gis]
kind = "arcgis"
url = "{arcgis}"
username = "admin"
password = "arcgis-password"
token_url = "{arcgis_login}"

[servers.gardin]
kind = "gardin"
url = "{gardin}"
client_id = "gardin-client"
client_secret = "gardin-secret"
token_url = "{gardin_login}"

[servers.rpm]
kind = "brpm"
url = "{brpm}"
token = "brpm-token"

[[watches]]
name = "nightly identity collection"
server = "governance"
id = "5733"

[[watches]]
name = "GP jobs cleanup"
server = "gis"
task = "CleanGPJobs"
id = "dae1bfa5d6ec44349790ebb3f27dd4e1"

[[watches]]
name = "crop index query"
server = "gardin"
id = "{query}"

[[watches]]
name = "release 42 deployment"
server = "rpm"
id = "42"
"""


def simulators(speed: float = 1.0) -> dict[str, Simulator]:
    """The demo's four systems; the Gardin query fails, the BRPM server has a busy moment."""
    return {
        "rsa": RsaSimulator(
            {"5733": ["New", "New", "Running", "Running", "Running", "Completed"]},
            token_ttl_s=3.0 / speed,  # expires mid-demo: watcher logs in again
        ),
        "arcgis": ArcGisSimulator(
            {
                "CleanGPJobs/dae1bfa5d6ec44349790ebb3f27dd4e1": [
                    "scheduled",
                    "executing",
                    "succeeded",
                ]
            },
            token_ttl_s=8.0 / speed,
        ),
        "gardin": GardinSimulator(
            {QUERY: ["SUBMITTED", "IN_PROGRESS", "RUNNING", "RUNNING", "FAILED"]},
            token_ttl_s=8.0 / speed,
        ),
        "brpm": BrpmSimulator(
            {"42": ["created", "planned", "started", Fault.http(503, "busy", "2"), "completed"]}
        ),
    }


async def demo(speed: float = 1.0, *, serve: str | None = None) -> int:
    """Run the demo; 0 when everything happened as designed, else what ``run --once`` gave.

    With ``serve`` (an address to listen on), run it as a daemon with its API and status page
    until a signal instead (:mod:`watcher.cli.demo_serve`); 0 when stopped so.
    """
    where = demo_serve.listener(serve) if serve is not None else None
    sims = simulators(speed)
    urls = {name: await sim.start() for name, sim in sims.items()}
    try:
        with tempfile.TemporaryDirectory(prefix="watcher-demo-") as tmp:
            path = Path(tmp) / "watches.toml"
            text = _config(urls, Path(tmp) / "watcher.db", speed)
            text += where.api_table() if where is not None else ""
            path.write_text(text, encoding="utf-8")
            print("watcher demo: simulators running; this is the config it watches with:\n")
            print(path.read_text(encoding="utf-8"), flush=True)
            if where is not None:
                return await demo_serve.serve(path, where, urls)
            config = load(path)
            logging.getLogger("watcher.engine").setLevel(logging.DEBUG)
            code = await run(config, Options(once=True, summary_every_s=5.0 / speed))
            print(
                f"\nwatcher run --once would exit with {code} (1: a run failed; the Gardin query "
                "fails on purpose). `watcher status` now shows:\n"
            )
            await report(config.daemon.state)
            print(NEXT)
            return 0 if code == EXPECTED_EXIT else code
    finally:
        for sim in sims.values():
            await sim.stop()


NEXT = """
What to try next:
  watcher init my.toml           a commented config: set your servers, channels and runs
  watcher check -c my.toml       validates it, channel URLs included, and says what it would do
  watcher notify-test CHANNEL    sends a test notification through one channel
  watcher wait SERVER ID         in a CI step: waits for one run, notifies, exits 0/1/3
  watcher run -c my.toml         as a service: see systemd/watcher.service and README.md
  watcher demo --serve           this demo left up with its API and status page, until Ctrl-C
  [api] in my.toml               uncomment it, run, and open http://127.0.0.1:9477/: the status
                                 page, and the API a CI step hands its runs to (README.md)
"""


def _config(urls: dict[str, str], state: Path, speed: float) -> str:
    root = urls["arcgis"].removesuffix("/admin")
    return CONFIG.format(
        state=state.as_posix(),
        interval=round(1.0 / speed, 3),
        max_interval=round(4.0 / speed, 3),
        rsa=urls["rsa"],
        arcgis=urls["arcgis"],
        arcgis_login=f"{root}/sharing/rest/generateToken",
        gardin=urls["gardin"],
        gardin_login=urls["gardin"].removesuffix("/v2") + "/oauth2/token",
        brpm=urls["brpm"],
        query=QUERY,
    )
