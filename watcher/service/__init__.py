"""The running process: a daemon (``watcher run``), or one run until every watch has ended
(``watcher run --once``, ``watcher wait``).

* :mod:`~watcher.service.daemon`: the process's life: it opens the store and the one HTTP
  session, starts the engine, the dispatcher and the API listener, reloads, renews its lease
  and stops.
* :mod:`~watcher.service.once`: how ``--once`` and ``wait`` end: a line per watch, the exit
  code, the summary, and the live view meanwhile.
* :mod:`~watcher.service.sdnotify`: systemd's notify protocol; :mod:`~watcher.service.logs`:
  the log output for a terminal, for journald or as JSON lines.

It may import every stage below it (api, engine, config, notify, metrics, stores, remote) and
the shared modules; only :mod:`watcher.cli` imports it.
"""
