"""The JSON Schema of watches.toml, for editors (``watcher schema``, ``watches.schema.json``).

Generated from :class:`~watcher.config.file.Config`, so it cannot drift from the models; then
adjusted to the file as written, before :mod:`~watcher.config.load` turns it into what the
models take:

* a watch may leave out ``server`` (``[defaults]`` may give it);
* a server's or channel's secret may be given as ``<key>_file`` instead (:mod:`.expand`);
* an ``[[api.tokens]]`` entry gives ``token_file``, ``token_env`` or ``hash``
  (:func:`~watcher.config.api.read_tokens`);
* the servers' models are named after their kind (``BrpmServer``).

Unknown keys are refused (``additionalProperties: false``), as the models refuse them; what
only a validator checks (a name that must resolve, ``max_interval`` below ``interval``) is left
to ``watcher check``. ``${VAR}`` is expanded before validation: a key that takes a number and
is given ``"${VAR}"`` is flagged by the schema, though watcher accepts it.
"""

from __future__ import annotations

import json
from typing import Any, Final

from watcher.config.file import Config
from watcher.remote.providers import KINDS

DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FILE: Final = "watches.schema.json"
"""Where the repository keeps the schema, beside the shipped watches.toml."""


def toml_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a watches.toml."""
    schema = Config.model_json_schema(mode="validation")
    schema = _renamed(schema, _server_names())
    defs = schema["$defs"]
    defs["WatchConfig"]["required"] = []  # the server may come from [defaults]
    for name in (*_server_names().values(), "ChannelConfig"):
        _secret_files(defs[name])
    _token_sources(defs["TokenConfig"])
    return {
        "$schema": DIALECT,
        **{key: value for key, value in schema.items() if key != "title"},
        "title": "watches.toml",
        "description": "watcher's configuration: what to watch and where to tell",
    }


def text() -> str:
    """:func:`toml_schema` as the file ``watcher schema`` prints and the repository keeps."""
    return json.dumps(toml_schema(), indent=2, sort_keys=True) + "\n"


def _server_names() -> dict[str, str]:
    """The def name pydantic gives each server model -> one named after its kind."""
    return {
        f"{kind.config.__module__.replace('.', '__')}__Config": _camel(name) + "Server"
        for name, kind in KINDS.items()
    }


def _camel(name: str) -> str:
    return "".join(part.title() for part in name.split("_"))


def _renamed(schema: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """``schema`` with its defs (and the references to them) renamed by ``names``."""
    dumped = json.dumps(schema)
    for old, new in names.items():
        dumped = dumped.replace(f'"{old}"', f'"{new}"').replace(f'/{old}"', f'/{new}"')
    renamed: dict[str, Any] = json.loads(dumped)
    for new in names.values():
        renamed["$defs"][new]["title"] = new
    return renamed


def _secret_files(model: dict[str, Any]) -> None:
    """Each secret string key may be given as ``<key>_file`` (a path) instead."""
    properties = model["properties"]
    required = model.get("required", [])
    for key, value in list(properties.items()):
        if not _secret_text(value):
            continue
        properties[f"{key}_file"] = {
            "type": "string",
            "description": f"a file holding the {key} (instead of {key})",
        }
        if key in required:
            required.remove(key)
            model.setdefault("allOf", []).append(
                {"oneOf": [{"required": [key]}, {"required": [f"{key}_file"]}]}
            )
        model.setdefault("allOf", []).append(
            {"not": {"required": [key, f"{key}_file"]}}  # either, not both
        )


def _secret_text(value: dict[str, Any]) -> bool:
    """Whether a property is a secret string (pydantic marks a SecretStr ``password``)."""
    choices = value.get("anyOf", [value])
    return any(c.get("format") == "password" and c.get("type") == "string" for c in choices)


def _token_sources(model: dict[str, Any]) -> None:
    """As written, a token gives exactly one of ``token_file``, ``token_env`` and ``hash``."""
    model["properties"]["token_file"] = {
        "type": "string",
        "description": "a file holding the token (watcher keeps its hash)",
    }
    model["properties"]["token_env"] = {
        "type": "string",
        "description": "an environment variable holding the token",
    }
    model["required"] = ["name", "scope"]
    sources = ("token_file", "token_env", "hash")
    model["oneOf"] = [{"required": [source]} for source in sources]
