"""Building blocks of the configuration models: strict base model, durations, server basics."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

from watcher import redact

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: Any) -> Any:
    """``"90s"``, ``"15m"``, ``"2h"``, ``"1d"``, ``"250ms"`` or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '90s', '15m', '2h', '1d' or seconds")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match[1]) * _UNITS[match[2] or "s"]
    raise ValueError(f"{value!r} is not a duration such as '90s', '15m', '2h', '1d' or seconds")


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


#: A length of time in seconds, written as ``"90s"``, ``"15m"``, ``"2h"``, ``"1d"`` or a number.
Duration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]


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

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]


def _existing_file(value: str) -> str:
    if not Path(value).is_file():
        raise ValueError(f"no such file: {value}")
    return value


class ServerBase(Model):
    """Keys every server has, whatever its kind."""

    kind: str
    url: HttpUrl
    verify_tls: bool = True
    ca_file: Annotated[str, AfterValidator(_existing_file)] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    max_concurrency: int = Field(default=4, ge=1, le=1000)
    request_timeout: Duration = 30.0

    def target_error(self, id: str | None, task: str | None) -> str | None:
        """Why a watch on this server cannot name this id/task, or ``None`` if it can."""
        if task is not None:
            return f"servers of kind {self.kind!r} have no tasks; remove 'task'"
        if not id:
            return "needs an 'id'"
        return None

    def discovers(self, id: str | None, task: str | None) -> bool:
        """Whether a watch of this target finds runs rather than following one."""
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
