"""watcher: poll long-running remote runs until they finish, then notify through apprise.

The packages are the pipeline's stages, and imports run only down this list (the import-linter
contracts in pyproject.toml, checked by ``lint-imports``)::

    cli          the command line and what each command does
    service      the running process: the daemon, the --once ending, systemd, logs
    api          the HTTP front door: the JSON API, the status page, the documents
    engine       what to poll and when: specs, the schedule, one poll, the engine
    config       watches.toml -> frozen models
    notify       messages and their delivery (the outbox loop)
    metrics      what the stages count, and the /metrics endpoint
    stores       durable state and the outbox: SQLite, PostgreSQL
    remote       the remote systems: the HTTP client, one provider per system
    schema  backoff  address     config building blocks, delay arithmetic, listening addresses
    models  errors  redact       values, the exception tree, masking
"""

from typing import Final

__all__ = ["DISTRIBUTION", "__version__"]

#: the one place the version is written; pyproject.toml reads it from here
__version__ = "0.1.0"
#: the name watcher is installed by (``pip install``, ``importlib.metadata``): pyproject.toml's
#: ``[project] name``. The import package and the command are ``watcher``; the registry's
#: ``watcher`` is another project.
DISTRIBUTION: Final = "watcher-runs"
