"""The HTTP front door beside the daemon (``[api]``): the JSON API, its tokens and the status page.

* :mod:`watcher.api.tokens`: ``[[api.tokens]]``, their scopes, constant-time checks and the limit
  on failed attempts per client address.
* :mod:`watcher.api.page`: the server-rendered status page at ``/``.
* :mod:`watcher.api.server`: the routes, the limits on what a client may send, and the listener.
"""
