"""watches.toml -> validated, frozen models.

* :mod:`~watcher.config.load`: the loading pipeline: reading, expanding, merging
  ``[defaults]`` and validating the file, where it is looked for when ``-c`` is not given, and
  where its state is. Every model below is importable from it too.
* :mod:`~watcher.config.expand`: ``${VAR}`` expansion and ``<key>_file`` secrets, before
  validation.
* :mod:`~watcher.config.explain`: a validation error as ``key.path: what is wrong`` lines.
* The models, one room per table: :mod:`~watcher.config.daemon` (``[daemon]``),
  :mod:`~watcher.config.watches` (``[defaults]`` and ``[[watches]]``),
  :mod:`~watcher.config.channels` (``[channels.<name>]``), and :mod:`~watcher.config.file`
  (:class:`~watcher.config.file.Config`, the whole file, whose names must resolve across tables).
* :mod:`~watcher.config.api`: ``[api]`` and ``[[api.tokens]]``: the listener's settings, the
  tokens' hashes and scopes, their checks.

Each stage below owns the models of its own tables and config composes them: the servers' from
:mod:`watcher.remote.providers`, the channels' checks from :mod:`watcher.notify`, the state
from :mod:`watcher.stores`. So config may import notify, metrics, stores, remote and the shared
modules (:mod:`watcher.schema` holds the building blocks every model uses); the engine, the API,
the service and the command line import it, never the other way.
"""
