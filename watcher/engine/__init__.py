"""What to poll and when: the watches as the engine runs them, their schedule, one poll, and
the engine that claims what is due, polls it and saves the result.

* :mod:`~watcher.engine.build`: configuration -> the engine's parts (specs, servers, channels),
  and the watches ``watcher submit`` adds.
* :mod:`~watcher.engine.spec`: a watch and a server as the engine runs them;
  :mod:`~watcher.engine.specs`: the engine's specs by key, each built when first asked for (a
  restart of a million watches builds none before its first claim).
* :mod:`~watcher.engine.lifecycle`: what one poll's answer does to a watch (pure, tested by
  tables); :mod:`~watcher.engine.schedule`: when each held watch polls next (a heap, pure);
  :mod:`~watcher.engine.history`: when earlier runs of the same family ended (pure), and
  :mod:`~watcher.engine.expect` what ``expect = "auto"`` learns from them.
* :mod:`~watcher.engine.reload`: what a new configuration adds, removes and changes (pure).
* :mod:`~watcher.engine.poll`: one poll of one watch: ask the remote system, decide what the
  answer means (a :class:`~watcher.engine.poll.Polled` value); it knows nothing of the engine.
* :mod:`~watcher.engine.engine`: the engine, composed of :mod:`~watcher.engine.watches` (what it
  knows of its watches: wanted, held, open, finished), :mod:`~watcher.engine.claims` (claims what
  is due from the store, lets go of the rest), :mod:`~watcher.engine.pump` (starts each poll at
  its time, per-server limits) and :mod:`~watcher.engine.apply` (saves a poll's result and
  schedules, releases or ends the watch); it also applies a reload.

It may import config, notify (channels, rendering), metrics, stores, remote (the providers) and
the shared modules; api, service and cli import it, never the other way. A poll's and the
engine's log lines are named ``watcher.engine``. Inside, imports run one way: ``engine``
composes ``claims``, ``pump`` and ``apply``, which share ``watches`` and use ``poll`` and
``spec``; no part calls back up into the engine.
"""
