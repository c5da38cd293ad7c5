"""What watches.toml says before it is validated: ``${VAR}`` expansion and secrets from files.

* ``${VAR}`` in any string is replaced by the environment variable, ``${VAR:-default}`` by the
  default when it is unset; an unset variable without a default is an error naming the key.
* In a server or channel table, ``<key>_file = "path"`` becomes ``<key> = <the file's content>``
  (stripped). A relative path is looked up in ``$CREDENTIALS_DIRECTORY`` (systemd's
  ``LoadCredential=``) first, then beside the config file. ``ca_file`` is a path, not a secret.

Errors are ``ValueError`` messages that start with the key path; the loader adds the file name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_FILE_SUFFIX = "_file"
_NOT_SECRET_FILES = {"ca_file"}


def expand(raw: dict[str, Any], env: Mapping[str, str]) -> Any:
    """``raw`` with every ``${VAR}`` in every string replaced from ``env``."""
    return _walk(raw, "", lambda value, key: _expand(value, key, env))


def _walk(value: Any, key: str, leaf: Callable[[str, str], Any]) -> Any:
    if isinstance(value, dict):
        return {k: _walk(v, f"{key}.{k}" if key else k, leaf) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, f"{key}[{i}]", leaf) for i, v in enumerate(value)]
    return leaf(value, key) if isinstance(value, str) else value


def _expand(value: str, key: str, env: Mapping[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name, default = match[1], match[2]
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ValueError(f"{key}: environment variable {name} is not set")

    return _VAR.sub(substitute, value)


def read_secret_files(data: Any, base: Path, env: Mapping[str, str]) -> Any:
    """Replace ``token_file = "..."`` by ``token = <file content>`` in servers and channels."""
    for section in ("servers", "channels"):
        tables = data.get(section, {})
        if not isinstance(tables, dict):
            continue
        for name, table in tables.items():
            if isinstance(table, dict):
                tables[name] = _secrets_from_files(table, f"{section}.{name}", base, env)
    return data


def _secrets_from_files(
    table: dict[str, Any], where: str, base: Path, env: Mapping[str, str]
) -> dict[str, Any]:
    out = dict(table)
    for key, value in table.items():
        if not key.endswith(_SECRET_FILE_SUFFIX) or key in _NOT_SECRET_FILES:
            continue
        field = key.removesuffix(_SECRET_FILE_SUFFIX)
        if field in table:
            raise ValueError(f"{where}: give either {field!r} or {key!r}, not both")
        out.pop(key)
        out[field] = read_secret(str(value), f"{where}.{key}", base, env)
    return out


def read_secret(name: str, key: str, base: Path, env: Mapping[str, str]) -> str:
    """The stripped text of a secret file: absolute, else under ``$CREDENTIALS_DIRECTORY``, else
    beside the config.

    Args:
        name: the path as the config gives it.
        key: the key path that names it, for messages (``servers.gov.token_file``).
        base: the folder of the config file.
        env: the environment, for ``$CREDENTIALS_DIRECTORY``.

    Raises:
        ValueError: no such file, it cannot be read or is not UTF-8; the message starts with
            ``key`` and names the path.
    """
    candidates = [Path(name)]
    if not candidates[0].is_absolute():
        creds = env.get("CREDENTIALS_DIRECTORY")
        candidates = ([Path(creds) / name] if creds else []) + [base / name]
    for candidate in candidates:
        try:
            if not candidate.is_file():
                continue
            return candidate.read_text(encoding="utf-8").strip()
        except OSError as exc:  # a file, or a folder on the way, this user may not read
            raise ValueError(f"{key}: cannot read {candidate}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ValueError(f"{key}: {candidate} is not UTF-8 text") from None
    raise ValueError(f"{key}: no such file {' or '.join(map(str, candidates))}")
