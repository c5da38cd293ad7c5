"""watcher: poll long-running remote runs until they finish, then notify through apprise."""

__all__ = ["__version__"]

#: the one place the version is written; pyproject.toml reads it from here
__version__ = "0.1.0"
