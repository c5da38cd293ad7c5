"""Message templates in two syntaxes, told apart by their text: pure checking and filling.

* A template holding ``{{`` or ``{%`` is Jinja2, rendered in its sandbox
  (``jinja2.sandbox.SandboxedEnvironment``: no access to Python internals), as plain text
  (``autoescape`` off), with an unknown name an error rather than an empty string. A line of
  the template that holds a tag and renders to nothing but spaces is left out, newline and
  all, so ``{% if link %}Link: {{ link }}{% endif %}`` is a line when there is a link and
  none when there is not. The sandbox keeps a template away from Python's internals, not from
  building a huge text (``{{ name * 100000000 }}``): templates are trusted configuration.
* Any other template is ``str.format`` text with plain ``{name}`` fields, the syntax before
  Jinja2; it is filled by ``str.format`` as it always was.

Jinja2 is imported only when a Jinja2 template is checked or filled.
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2 import Template
    from jinja2.sandbox import SandboxedEnvironment


def is_jinja(template: str) -> bool:
    """Whether ``template`` is Jinja2 (it holds ``{{`` or ``{%``) rather than ``str.format``."""
    return "{{" in template or "{%" in template


def check(template: str, names: Collection[str]) -> None:
    """Raise ``ValueError`` for a template that does not parse or uses a name not in ``names``.

    In ``str.format`` templates only plain ``{name}`` fields are allowed: a format spec
    (``{name:>99999999}`` builds a 100 MB title) or a conversion (``{name!r}``) is rejected.
    """
    if is_jinja(template):
        _refuse_unknown(_jinja_names(template), names)
    else:
        _refuse_unknown(_format_names(template), names)


def fill(template: str, fields: Mapping[str, Any]) -> str:
    """``template`` with ``fields`` filled in; raises whatever a template raises."""
    if is_jinja(template):
        return _unmarked(_compiled(template).render(fields)).strip("\n")
    return template.format_map(fields)


def prepare(*sources: str | None) -> None:
    """Compile the Jinja2 templates among ``sources`` now, so that the first message of a busy
    moment does not wait for Jinja2 to be imported and the template compiled."""
    for template in sources:
        if template and is_jinja(template):
            _compiled(template)


def _jinja_names(template: str) -> set[str]:
    from jinja2 import TemplateSyntaxError, meta

    environment = _jinja()
    try:
        tree = environment.parse(_marked(template))
        environment.compile(tree)  # unknown filters and tests are found here
    except TemplateSyntaxError as exc:
        raise ValueError(f"bad template: {exc.message} (line {exc.lineno})") from None
    return meta.find_undeclared_variables(tree) - environment.globals.keys()


def _format_names(template: str) -> set[str]:
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError as exc:
        raise ValueError(f"bad template: {exc} (write {{{{ and }}}} for literal braces)") from None
    for name, spec, conversion in fields:
        if spec or conversion:
            written = (
                f"{{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}"
            )
            msg = f"bad template: {written} is not a plain placeholder; write {{{name}}}"
            raise ValueError(msg)
    return {name for name, _, _ in fields}


def _refuse_unknown(used: set[str], names: Collection[str]) -> None:
    unknown = sorted(used - set(names))
    if unknown:
        raise ValueError(f"unknown placeholder {unknown[0]!r}; known: {', '.join(names)}")


@cache
def _jinja() -> SandboxedEnvironment:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, lstrip_blocks=True)


@cache
def _compiled(template: str) -> Template:
    return _jinja().from_string(_marked(template))


# Every line of a Jinja2 template that holds a tag gets this mark at its end; a rendered line
# of nothing but marks and spaces came from such a line whose values were all empty.
_MARK = "\x00"
_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}")


def _marked(template: str) -> str:
    lines = template.split("\n")
    return "\n".join(line + _MARK if _holds_whole_tags(line) else line for line in lines)


def _holds_whole_tags(line: str) -> bool:
    """Whether ``line`` has a tag and leaves none open (a mark inside a tag would not parse)."""
    rest = _TAG.sub("", line)
    return rest != line and not any(opening in rest for opening in ("{{", "{%", "{#"))


def _unmarked(text: str) -> str:
    lines = text.split("\n")
    kept = [line for line in lines if _MARK not in line or line.replace(_MARK, "").strip()]
    return "\n".join(kept).replace(_MARK, "")
