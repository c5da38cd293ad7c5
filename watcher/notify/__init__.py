"""Messages and their delivery.

* :mod:`~watcher.notify.templates`: checking and filling message templates (sandboxed Jinja2 or
  ``str.format``), pure.
* :mod:`~watcher.notify.messages`: a message rendered from a watch's event (pure), and a
  channel: its apprise object, the events it wants, its quiet hours.
* :mod:`~watcher.notify.quiet`: quiet hours, a daily window of local time.
* :mod:`~watcher.notify.sending`: whether a delivery is under way, so the log handlers drop
  apprise's own line about it (watcher's failure line quotes it).
* :mod:`~watcher.notify.digests`: which due notes wait for their channel's ``group`` window,
  and the one message they become (pure).
* :mod:`~watcher.notify.reminders`: the next reminder of a lasting condition, and whether it
  still lasts (pure).
* :mod:`~watcher.notify.escalation`: how reminders space out (``repeat_factor``) and when an
  ``after`` channel first hears of a lasting condition (pure).
* :mod:`~watcher.notify.silences`: which silence names a watch (pure).
* :mod:`~watcher.notify.acks`: which occurrence of a condition a note tells of, and whether it
  was acknowledged (pure).
* :mod:`~watcher.notify.holds`: the gate before sending: taken over, passed, acknowledged, silenced,
  quiet.
* :mod:`~watcher.notify.dispatch`: the outbox loop: claim the due notes, deliver them (singly
  or in a digest) until apprise says they arrived, record the outcome.

It may import metrics, stores (the outbox) and the shared modules; config checks its tables
with this package's functions, and the engine renders with them, never the other way.
"""
