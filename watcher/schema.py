"""Building blocks of the configuration models: strict base model, durations, server basics."""

from __future__ import annotations

import functools
import math
import re
import ssl
from pathlib import Path
from typing import Annotated, Any, Final, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    WithJsonSchema,
    model_validator,
)

from watcher import redact

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = re.compile(r"\s*(\d+(?:\.\d+)?)\s*")
#: one or more parts with a unit each: ``90s``, ``1h30m``, ``1d02h`` (as watcher prints them)
_DURATION = re.compile(r"\s*(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+")
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")

#: The longest duration any key takes: a year is past every run watcher is meant for.
MAX_DURATION_S: Final = 365 * 86400.0


def parse_duration(value: Any) -> float:
    """``"90s"``, ``"15m"``, ``"1h30m"``, ``"1d"``, ``"250ms"`` or a number of seconds -> seconds.

    Only the form is checked here; :func:`check_duration` checks the range.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '90s', '15m', '2h', '1d' or seconds")
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:  # an integer with hundreds of digits
            return math.inf
    if isinstance(value, str):
        if match := _NUMBER.fullmatch(value):
            return float(match[1])
        if _DURATION.fullmatch(value):
            return sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(value))
    raise ValueError(f"{value!r} is not a duration such as '90s', '15m', '1h30m', '1d' or seconds")


def check_duration(seconds: float) -> float:
    """``seconds`` if it is more than zero and at most :data:`MAX_DURATION_S`, else ValueError."""
    if math.isnan(seconds):
        raise ValueError("must be a number of seconds or a duration such as '15m', not nan")
    if seconds <= 0:
        raise ValueError("must be a duration greater than zero")
    if seconds > MAX_DURATION_S:
        raise ValueError("must be at most 365 days")
    return seconds


def _duration(value: Any) -> float:
    try:  # the same few values, set in [defaults], for 100,000 watches
        return _checked_duration(value)
    except TypeError:  # unhashable: a list, say
        return check_duration(parse_duration(value))


@functools.lru_cache(maxsize=256, typed=True)
def _checked_duration(value: Any) -> float:
    return check_duration(parse_duration(value))


#: What a duration looks like to an editor (``watcher schema``): the forms
#: :func:`parse_duration` reads, within the range :func:`check_duration` allows.
DURATION_JSON_SCHEMA: Final[dict[str, Any]] = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DURATION_S},
        {
            "type": "string",
            "pattern": r"^\s*(?:\d+(?:\.\d+)?|(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+)\s*$",
        },
    ],
    "description": "a duration: '90s', '15m', '1h30m', '1d', '250ms' or a number of seconds",
}

#: A length of time in seconds, written as ``"90s"``, ``"15m"``, ``"2h"``, ``"1d"`` or a number;
#: more than zero and at most 365 days.
Duration = Annotated[float, BeforeValidator(_duration), WithJsonSchema(DURATION_JSON_SCHEMA)]


def format_duration(seconds: float) -> str:
    """``5400`` -> ``"1h30m"``; sub-minute values keep one decimal when needed."""
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds % 1 else f"{int(seconds)}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    units = ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s"))
    parts = [(n, u) for n, u in units if n][:2]
    return "".join(f"{n:02d}{u}" if i else f"{n}{u}" for i, (n, u) in enumerate(parts))


class Model(BaseModel):
    """Every configuration model: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True,  # the configuration reference documents each key
    )


def _http_url(value: str) -> str:
    """An http(s) URL a request can be sent to: a host, a valid port, nothing unprintable."""
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    if any(char.isspace() or not char.isprintable() for char in value):
        raise ValueError("must not contain spaces or control characters (write %20 for a space)")
    try:
        parts = urlsplit(value)
    except ValueError as exc:  # an unclosed [ of an IPv6 address, say
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.username is not None or parts.password is not None:  # it would show in messages
        raise ValueError("must not hold a user name or password; use the server's auth keys")
    if problem := _host_problem(parts.netloc, parts.hostname):
        raise ValueError(problem)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("the port must be a number from 1 to 65535")
    return value.rstrip("/")


_HOST_NAME = re.compile(r"[\w-]+(?:\.[\w-]+)*\.?")


def _host_problem(netloc: str, host: str | None) -> str | None:
    if not host:
        return "has no host, e.g. https://host.example.com/path"
    if "[" in netloc:  # an IPv6 address, already checked by urlsplit
        return None
    if not _HOST_NAME.fullmatch(host):
        return f"{host!r} is not a host name"
    return None


HttpUrl = Annotated[str, AfterValidator(_http_url)]


def _ca_bundle(value: str) -> str:
    """A file of PEM certificates that TLS can trust, tried as the client will use it."""
    if not Path(value).is_file():
        raise ValueError(f"no such file: {value}")
    try:
        ssl.create_default_context(cafile=value)
    except ssl.SSLError as exc:
        raise ValueError(
            f"{value} holds no certificate TLS can use ({exc.reason or exc})"
        ) from None
    except OSError as exc:
        raise ValueError(f"cannot read {value}: {exc.strerror}") from None
    return value


class ServerBase(Model):
    """Keys every server has, whatever its kind."""

    kind: str
    """The kind of remote system; each kind's own keys are in its section."""
    url: HttpUrl
    """Base URL, see each system: ``http://`` or ``https://``, a host, a port from 1 to 65535, no
    spaces or control characters, no ``user:password@`` (credentials go in the auth keys, which
    are masked); the same holds for ``token_url``.
    """
    verify_tls: bool = True
    """Check the server's TLS certificate."""
    ca_file: Annotated[str, AfterValidator(_ca_bundle)] | None = None
    """A CA bundle (PEM) to trust instead of the system's; one holding no certificate is a config
    error.
    """
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra headers on every request."""
    max_concurrency: int = Field(default=4, ge=1, le=1000)
    """Requests in flight to this server at most."""
    request_timeout: Duration = 30.0
    """One request, from sending to the whole answer, redirects included."""

    def target_error(self, id: str | None, task: str | None) -> str | None:
        """Why a watch on this server cannot name this id/task, or ``None`` if it can."""
        if task is not None:
            return f"servers of kind {self.kind!r} have no tasks; remove 'task'"
        if not id:
            return "needs an 'id'"
        return None

    def discovers(self, id: str | None, task: str | None, each: bool | None = None) -> bool:
        """Whether a watch of this target finds runs rather than following one (``each``: the
        watch's own ``each``, where the system has it)."""
        return False

    def split_ids(self, id: str | None) -> list[str | None]:
        """The runs one watch's ``id`` names (RSA start commands return several)."""
        return [id]

    @model_validator(mode="after")
    def _register_secrets(self) -> Self:
        """Every secret of a server is masked in all output from the moment it is known."""
        for value in self.__dict__.values():
            if isinstance(value, SecretStr):
                redact.register(value.get_secret_value())
        return self
