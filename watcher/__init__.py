"""watcher: poll long-running remote runs until they finish, then notify through apprise."""

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    """``__version__`` is read from the installed metadata only when someone asks for it."""
    if name != "__version__":
        raise AttributeError(name)
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("watcher")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"
