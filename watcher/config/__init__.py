"""watches.toml -> validated, frozen models.

* :mod:`~watcher.config.load`: reading, expanding and validating the file (:class:`Config
  <watcher.config.load.Config>`), where it is looked for when ``-c`` is not given, and where
  its state is.
* :mod:`~watcher.config.expand`: ``${VAR}`` expansion and ``<key>_file`` secrets, before
  validation.
* :mod:`~watcher.config.api`: ``[api]`` and ``[[api.tokens]]``: the listener's settings, the
  tokens' hashes and scopes, their checks.

Each stage below owns the models of its own tables and config composes them: the servers' from
:mod:`watcher.remote.providers`, the channels' checks from :mod:`watcher.notify`, the state
from :mod:`watcher.stores`. So config may import notify, metrics, stores, remote and the shared
modules (:mod:`watcher.schema` holds the building blocks every model uses); the engine, the API,
the service and the command line import it, never the other way.
"""
