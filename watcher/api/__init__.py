"""The HTTP front door beside the daemon (``[api]``): the JSON API, its tokens and the status page.

Its configuration, ``[api]`` and ``[[api.tokens]]`` with their scopes, constant-time checks and
the host names answered, is :mod:`watcher.config.api`.

* :mod:`watcher.api.documents`: the JSON documents of ``--json`` and ``/api/v1``, and the filters
  the page and the API share.
* :mod:`watcher.api.limits`: what one client may try: failed attempts per address (slowed past
  a limit), submissions per token (quotas), and the count of what was refused.
* :mod:`watcher.api.access`: who is asking: the client's address, the token a request carries,
  the page's cookie.
* :mod:`watcher.api.v1`: ``/api/v1``: the documents of ``status --json``, submissions and
  silences, with the models that check what a client sends.
* :mod:`watcher.api.page` renders the status page; :mod:`watcher.api.site` serves it.
* :mod:`watcher.api.checks`: what every request must pass, and how a refusal is answered.
* :mod:`watcher.api.health`: ``/healthz``; :mod:`watcher.api.reads` and
  :mod:`watcher.api.writes`: the handlers of ``/api/v1``.
* :mod:`watcher.api.contract`: ``/api/v1/openapi.json``, the OpenAPI document of the routes.
* :mod:`watcher.api.server`: the routes, composing the above, and the listener's life.

It may import the engine (what a submission becomes, the history of runs), config, notify,
metrics, stores and the shared modules. The daemon starts it and serves it through the small
:class:`~watcher.api.server.Service` protocol defined here, so it never imports the service.
"""
