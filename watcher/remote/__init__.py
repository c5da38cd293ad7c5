"""The remote systems: one HTTP client, and one provider per system.

* :mod:`~watcher.remote.client`: the only module that imports aiohttp's client: timeouts, TLS,
  requests in flight per server, and network errors mapped onto :mod:`watcher.errors`.
* :mod:`~watcher.remote.redirects`: which redirects are followed (one origin, at most five);
  :mod:`~watcher.remote.bodies`: JSON read safely, and the sentence of an error page.
* :mod:`watcher.remote.providers`: the registry, and one module per remote system.

It may import only the shared modules (models, errors, redact, schema). Providers never import
one another (they share ``base`` and ``auth``) and never catch network errors.
"""
