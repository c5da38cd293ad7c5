"""The running process: a daemon (``watcher run``), or one run until every watch has ended
(``watcher run --once``, ``watcher wait``).

* :mod:`~watcher.service.daemon`: the process's life, a composition of the parts below and
  the engine and dispatcher: it opens the store and the one HTTP session, starts the parts,
  waits, reloads on SIGHUP and stops them in order.
* :mod:`~watcher.service.parts`: the parts of one run, built from the configuration on the
  open store and the one HTTP session.
* :mod:`~watcher.service.cluster`: instances sharing a database: lease renewal, this
  instance's share of the open watches, and what it lets go of.
* :mod:`~watcher.service.front`: the HTTP side: the ``[api]`` listener and ``/metrics``, and
  the API's ``Service`` (what the API needs of the daemon).
* :mod:`~watcher.service.facts`: the one line the process says of itself (``STATUS=``,
  ``/healthz``), which refreshes the gauges.
* :mod:`~watcher.service.heartbeat`: the dead-man's switch: ``[daemon] heartbeat`` pinged
  while this instance works.
* :mod:`~watcher.service.once`: how ``--once`` and ``wait`` end: the summary and the live view
  meanwhile, the settling, a line per watch and the exit code.
* :mod:`~watcher.service.sdnotify`: systemd's notify protocol; :mod:`~watcher.service.logs`:
  the log output for a terminal, for journald or as JSON lines.

It may import every stage below it (api, engine, config, notify, metrics, stores, remote) and
the shared modules; only :mod:`watcher.cli` imports it.
"""
