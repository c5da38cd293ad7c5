"""``watcher init [PATH]``: write a commented ``watches.toml`` to start from.

The file passes ``watcher check`` as written: one server to edit (a generic ``http`` one), a
``console://`` channel, and the rest commented: the other kinds of server, channels that reach
people, watches, ``[api]``. Its first line is the ``#:schema`` line editors read (taplo, Even
Better TOML), naming ``watches.schema.json`` beside it (``watcher schema`` writes it). An
existing file is never overwritten unless asked (``--force``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from watcher.errors import EXIT_OK, ConfigError

SCHEMA_LINE: Final = "#:schema ./watches.schema.json"

TEMPLATE: Final = f"""\
{SCHEMA_LINE}
# watcher: what to watch and where to tell. Editors that read the line above complete and check
# keys once it exists: watcher schema > watches.schema.json
# Next: set [servers.builds] (or one of the kinds below), then
#   watcher check -c FILE                 validates this file and says what it would do
#   watcher notify-test console -c FILE   sends a test notification
#   watcher wait builds 1234 -c FILE      waits for one run (a CI step), exits 0/1/3
#   watcher run -c FILE                   as a service, with the [[watches]] below
# ${{VAR}} is read from the environment (${{VAR:-default}} when unset); any secret key may
# instead be given as <key>_file = "path" (relative paths look in $CREDENTIALS_DIRECTORY first).

[daemon]                      # every key here can also be set as WATCHER_<KEY>
# state = "watcher.db"        # default: $STATE_DIRECTORY/watcher.db, else ./watcher.db
                              # or postgresql://... to share it between instances

# [api]                       # the HTTP API and the status page
# listen = "127.0.0.1:9477"   # loopback; elsewhere give cert_file and key_file
# [[api.tokens]]              # `watcher token new` makes one and prints its hash
# name = "ci"
# scope = "submit"            # read < submit < admin
# token_file = "ci.token"

[defaults]                    # any watch key may be set here
interval = "15s"              # first delay between polls
backoff = 1.5                 # the delay grows by this factor while nothing changes ...
max_interval = "5m"           # ... up to this; a state change resets it to interval
timeout = "12h"               # no terminal state by then: outcome "timeout"
notify = ["console"]          # channel names

[channels.console]            # prints each notification on stdout: swap for one below
url = "console://"

# [channels.team]             # any apprise URL: Slack, Teams, mail, ntfy, webhooks ...
# url = "slack://${{SLACK_TOKENS}}/#ops"
# on = ["failed", "cancelled", "timeout", "error", "unreachable"]   # default: every event

# A run's state read from any JSON API: GET url + path, the state at a JMESPath.
[servers.builds]
kind = "http"
url = "https://ci.example.com/api"
path = "/jobs/{{id}}"
state = "job.status"
success = ["ok"]
failure = ["broken"]
# cancelled = ["aborted"]
# auth = "bearer"
# token = "${{CI_TOKEN}}"

# [servers.governance]
# kind = "rsa_governance"
# url = "https://instance.securid.com/aveksa"
# token = "${{RSA_TOKEN}}"

# [servers.gis]
# kind = "arcgis"
# url = "https://gis.example.com/arcgis/admin"
# username = "${{ARCGIS_USER}}"
# password = "${{ARCGIS_PASSWORD}}"

# [servers.gardin]
# kind = "gardin"
# client_id = "${{GARDIN_CLIENT_ID}}"
# client_secret = "${{GARDIN_CLIENT_SECRET}}"

# [servers.rpm]
# kind = "brpm"
# url = "https://rpm.example.com:8443/brpm"
# token = "${{BRPM_TOKEN}}"

# The runs `watcher run` watches (`watcher wait` and `submit` need none here).
# [[watches]]
# name = "nightly build"      # optional; a readable default is derived
# server = "builds"
# id = "1234"
# timeout = "2h"
"""


def init(path: str | Path, *, force: bool = False) -> int:
    """Write :data:`TEMPLATE` to ``path``, then say what to do next on stdout.

    Raises:
        ConfigError: ``path`` exists and ``force`` is not given, or it cannot be written.
    """
    path = Path(path)
    if path.exists() and not force:
        raise ConfigError(f"{path} exists: not overwritten (--force overwrites it)")
    try:
        path.write_text(TEMPLATE, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"wrote {path}; next: watcher check -c {path}")
    return EXIT_OK
