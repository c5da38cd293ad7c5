"""Messages and their delivery.

* :mod:`~watcher.notify.templates`: checking and filling message templates (sandboxed Jinja2 or
  ``str.format``), pure.
* :mod:`~watcher.notify.messages`: a message rendered from a watch's event (pure), and a
  channel: its apprise object, the events it wants, its quiet hours.
* :mod:`~watcher.notify.quiet`: quiet hours, a daily window of local time.
* :mod:`~watcher.notify.dispatch`: the outbox loop: every undelivered notification, singly or
  in a digest, until apprise says it arrived.

It may import metrics, stores (the outbox) and the shared modules; config checks its tables
with this package's functions, and the engine renders with them, never the other way.
"""
