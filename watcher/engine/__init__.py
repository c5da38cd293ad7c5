"""What to poll and when: the watches as the engine runs them, their schedule, one poll, and
the engine that claims what is due, polls it and saves the result.

* :mod:`~watcher.engine.build`: configuration -> the engine's parts (specs, servers, channels),
  and the watches ``watcher submit`` adds.
* :mod:`~watcher.engine.spec`: a watch and a server as the engine runs them.
* :mod:`~watcher.engine.lifecycle`: what one poll's answer does to a watch (pure, tested by
  tables); :mod:`~watcher.engine.schedule`: when each held watch polls next (a heap, pure);
  :mod:`~watcher.engine.history`: when earlier runs of the same family ended (pure).
* :mod:`~watcher.engine.poll`: one poll of one watch: ask, decide, render, save.
* :mod:`~watcher.engine.engine`: claims what is due from the store, starts each poll at its
  time, takes a reload.

It may import config, notify (channels, rendering), metrics, stores, remote (the providers) and
the shared modules; api, service and cli import it, never the other way. A poll's and the
engine's log lines are named ``watcher.engine``. ``poll`` and ``engine`` still know each other
(the poller reports back to its engine): the one cycle the contract in pyproject.toml lets
through.
"""
