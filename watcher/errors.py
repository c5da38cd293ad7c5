"""The exception tree. Every error watcher raises on purpose is one of these::

    WatcherError
    ├── ConfigError          bad watches.toml, bad flags: exit code 2, never a traceback
    ├── StoreError           the state file or database cannot be opened, read or written
    └── PollError            one poll of one watch did not give a usable answer
        ├── TransientError   connection refused or reset, timeout, 5xx, 429: retry with backoff
        ├── BadReplyError    the body was not what the API documents: retried once, then ``error``
        └── PermanentError   401, 403, 404, 412, 422 ...: the watch ends with outcome ``error``

Only ``client.py`` sees aiohttp's exceptions, and only ``stores/`` a database driver's; they
raise these instead. Messages never carry secrets: URLs are logged without their query strings
and known secret values are masked.
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INCOMPLETE, EXIT_UNDELIVERED = 0, 1, 2, 3, 4
"""Exit codes: all succeeded; any failed or cancelled; bad config or usage; any timeout, error,
unfinished or unsaved; all succeeded but notifications are undelivered."""
EXIT_INTERNAL, EXIT_BROKEN_PIPE = 70, 141
"""A bug; stdout closed by its reader (128 + SIGPIPE, as other tools say it)."""


class WatcherError(Exception):
    """Base of every error watcher raises on purpose."""


class ConfigError(WatcherError):
    """The configuration or the command line is wrong; the message says where and why."""


class StoreError(WatcherError):
    """The state (a file or a database) cannot be opened, read or written now; the message is
    what its driver said. The stores raise it in place of their driver's errors."""


class PollError(WatcherError):
    """A poll did not give a usable answer.

    ``cause`` says in a few words what the server did (``answered HTTP 503``, ``refused the
    connection``, ``timed out``, ``answered HTML where JSON belongs``), for headlines; the
    message has the whole story.
    """

    #: what the server did, when whoever raised the error knew; see :attr:`cause`
    said: str = ""
    _FALLBACK = "gave no usable answer"

    @property
    def cause(self) -> str:
        """What the server did, in a few words (a sentence's predicate: "gov {cause}")."""
        return self.said or self._FALLBACK

    def because(self, said: str) -> PollError:
        """This error, saying in a few words what the server did; returns itself."""
        self.said = said
        return self


class TransientError(PollError):
    """Worth retrying later; ``retry_after_s`` is the server's own wish, when it said one."""

    _FALLBACK = "could not be reached"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BadReplyError(PollError):
    """The server answered, but not with the JSON its API documents."""

    _FALLBACK = "answered something its API does not document"


class PermanentError(PollError):
    """Retrying will not help: the watch ends with outcome ``error``."""

    _FALLBACK = "refused the request"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
