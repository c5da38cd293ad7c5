"""The command line: what a person or a CI job types, and what each command then does.

* :mod:`~watcher.cli.main`: argument parsing and exit codes, nothing else (the console script).
* :mod:`~watcher.cli.commands`: what each command does once the line is parsed; imported only
  when a command runs.
* :mod:`~watcher.cli.status`: ``watcher status``: the instances, a table of watches and the
  undelivered notifications.
* :mod:`~watcher.cli.api_client`: ``submit``, ``cancel`` and ``wait`` with ``--url``: the same
  commands through a daemon's HTTP API; :mod:`~watcher.cli.progress` what ``wait --url``
  shows meanwhile (the live view, or the state lines and the summary).
* :mod:`~watcher.cli.demo`: ``watcher demo``, the real engine against the local simulators.

The top of the layers: it may import every other package, and none imports it.
"""
