"""The configuration reference: a Markdown table of every key of watches.toml, from the models.

Each key's type, default and bounds come from the pydantic models, its description from the
attribute docstring under the field, so the page cannot say what the code does not do.
``docs/reference/configuration.md`` is this module's output, and a test keeps it so::

    python -m watcher.config.reference > docs/reference/configuration.md

The tables are the models' own: ``[daemon]``, ``[defaults]`` and ``[[watches]]``,
``[channels.<name>]``, ``[servers.<name>]`` (the keys every server has, then each kind's own
from :data:`watcher.remote.providers.KINDS`), ``[api]`` and ``[[api.tokens]]``, and the
stores a ``[daemon] state`` can name (:data:`watcher.stores.registry.SCHEMES`).
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from enum import Enum
from typing import Annotated, Any, Final, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from watcher import DISTRIBUTION
from watcher.config.api import ApiConfig, TokenConfig
from watcher.config.channels import ChannelConfig
from watcher.config.daemon import Daemon
from watcher.config.watches import WatchConfig
from watcher.remote.providers import KINDS
from watcher.remote.providers.http import Acceptor
from watcher.schema import ServerBase, format_duration
from watcher.stores.registry import SCHEMES

COMMAND: Final = "python -m watcher.config.reference > docs/reference/configuration.md"
"""How the committed page is made again after a model changes."""

_HEADER: Final = """\
# Configuration reference

<!-- Generated from the configuration models by `{command}`; do not edit. -->

Every key of `watches.toml`, table by table, as the code reads it: its type, its default and
what it does. Unknown keys are errors everywhere. How durations, `${{VAR}}` and `<key>_file`
secrets are written is in [watches.toml](../configuration.md#values); the guide pages say how
the keys work together. A *secret* may also be given as `<key>_file`, a file holding it (see
[Secrets from files](../configuration.md#secrets-from-files)).
"""


def _validator_names(metadata: Sequence[Any]) -> set[str]:
    """The names of the functions validating a value: how watcher's own types are told apart."""
    return {getattr(getattr(m, "func", None), "__name__", "") for m in metadata}


def _type_name(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    """A person's name of a field's type: ``duration``, ``list of strings``, ``"a" or "b"``."""
    validators = _validator_names(metadata)
    if "_duration" in validators:
        return "duration"
    if "_http_url" in validators:
        return "URL"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_name(args[0], args[1:])
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None))
    if origin is Literal:
        return " or ".join(f'`"{a}"`' for a in args)
    if origin in (list, frozenset):
        return f"list of {_plural(args[0])}"
    if origin is dict:
        return f"table of {_plural(args[1])}"
    return _SIMPLE.get(annotation) or _class_name(annotation)


def _class_name(annotation: Any) -> str:
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "event" if annotation.__name__ == "Event" else "name"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    return str(getattr(annotation, "__name__", annotation))


def _plural(annotation: Any) -> str:
    name = _type_name(annotation)
    if " or " in name:
        return f"({name})"
    return {"table": "tables", "secret string": "secret strings"}.get(name, f"{name}s")


_SIMPLE: Final[dict[Any, str]] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    SecretStr: "secret string",
}


def _bounds(field: FieldInfo) -> str:
    """`` (1 to 64)`` from a field's ``ge``/``le``, else nothing."""
    low = next((m.ge for m in field.metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in field.metadata if isinstance(m, annotated_types.Le)), None)
    if low is None and high is None:
        return ""
    if high is None:
        return f" (at least {_number(low)})"
    return (
        f" ({_number(low)} to {_number(high)})"
        if low is not None
        else f" (at most {_number(high)})"
    )


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _toml(value: Any) -> str:
    """A default as it is written in watches.toml."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # an Event is a str too
        return f'"{value}"'
    if isinstance(value, list | tuple | frozenset | set):
        items = sorted(value) if isinstance(value, frozenset | set) else value
        return "[" + ", ".join(_toml(v) for v in items) + "]"
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
            if value
            else "{}"
        )
    return f"{value:g}" if isinstance(value, float) else str(value)


def _default(field: FieldInfo, type_name: str) -> str:
    """The default as a cell: ``(required)``, ``(none)``, ``"15s"``, or the factory's docstring."""
    factory: Callable[[], Any] | None = field.default_factory  # type: ignore[assignment]
    if factory is not None:
        doc = factory.__doc__ if factory not in (list, dict) else None
        return _markdown(doc.splitlines()[0]).rstrip(".") if doc else f"`{_toml(factory())}`"
    if field.default is PydanticUndefined:
        return "(required)"
    if field.default is None:
        return "(none)"
    if type_name.startswith("duration"):
        return f'`"{format_duration(field.default)}"`'
    return f"`{_toml(field.default)}`"


def _markdown(docstring: str) -> str:
    """A docstring's reStructuredText literals and roles as Markdown, on one line (a cell)."""
    text = _ROLE.sub(r"`\1`", docstring).replace("``", "`")
    return " ".join(text.split()).replace("|", "\\|")


_ROLE: Final = re.compile(r":\w+:`~?([^`]+)`")
#: ``[daemon]``: at the start of a model's docstring, which the heading already says
_TABLE_PREFIX: Final = re.compile(r"`\[[^`]+\]`: ")


def _row(key: str, field: FieldInfo) -> str:
    type_name = _type_name(field.annotation, field.metadata)
    description = _markdown(field.description or "")
    if "secret" in type_name:
        description += " A secret."
    cells = [f"`{key}`", type_name + _bounds(field), _default(field, type_name), description]
    return "| " + " | ".join(cells) + " |"


def table(model: type[BaseModel], skip: frozenset[str] = frozenset()) -> str:
    """A Markdown table of ``model``'s keys (but those in ``skip``), in the model's order."""
    rows = [_row(key, f) for key, f in model.model_fields.items() if key not in skip]
    return "\n".join(["| key | type | default | what it does |", "|---|---|---|---|", *rows])


def _doc(model: type[BaseModel]) -> str:
    """The first paragraph of a model's docstring, as Markdown."""
    text = _TABLE_PREFIX.sub("", _markdown((model.__doc__ or "").split("\n\n")[0]), count=1)
    return text[:1].upper() + text[1:]


def _kind_section(name: str, title: str, config: type[ServerBase]) -> Iterator[str]:
    redefined = vars(config).get("__annotations__", {})
    inherited = frozenset(k for k in ServerBase.model_fields if k not in redefined) | {"kind"}
    yield f'### {title} (`kind = "{name}"`)'
    yield _doc(config)
    yield table(config, skip=inherited)
    if name == "http":
        yield "#### `acceptors` entries"
        yield _doc(Acceptor)
        yield table(Acceptor)


def _stores() -> Iterator[str]:
    yield "## Stores"
    yield (
        "A `[daemon] state` is a SQLite file, unless it is a URL with one of these schemes,"
        " which name a database that several instances share:"
    )
    rows = [
        f"| `{scheme}://` | {kind.name} | "
        + (f"`pip install '{DISTRIBUTION}[{kind.extra}]'`" if kind.extra else "with watcher")
        + " |"
        for scheme, kind in SCHEMES.items()
    ]
    yield "\n".join(["| scheme | store | its driver installs |", "|---|---|---|", *rows])


def sections() -> Iterator[str]:
    """The page's blocks, in order: a heading, a paragraph or a table each."""
    yield _HEADER.format(command=COMMAND).rstrip("\n")
    yield "## `[daemon]`"
    yield _doc(Daemon) + " The environment wins over the file."
    yield table(Daemon)
    yield "## `[defaults]` and `[[watches]]`"
    yield _doc(WatchConfig) + " Every key but `name` may also be set in `[defaults]`."
    yield table(WatchConfig)
    yield "## `[channels.<name>]`"
    yield _doc(ChannelConfig)
    yield table(ChannelConfig)
    yield "## `[servers.<name>]`"
    yield _doc(ServerBase)
    yield table(ServerBase)
    for kind in KINDS.values():
        yield from _kind_section(kind.name, kind.title, kind.config)
    yield "## `[api]`"
    yield _doc(ApiConfig)
    yield table(ApiConfig)
    yield "### `[[api.tokens]]`"
    yield _doc(TokenConfig)
    yield table(TokenConfig)
    yield from _stores()


def markdown() -> str:
    """The whole page, as committed in ``docs/reference/configuration.md``."""
    return "\n\n".join(sections()) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
