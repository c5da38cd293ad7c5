"""The API's contract, ``watcher/api/openapi.json``: a valid OpenAPI 3.1 document that names
every route a real listener registers and nothing more, the scope each needs, and the status
codes and documents a real daemon answers with."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from pydantic import BaseModel

from tests.conftest import Receiver
from tests.test_api import ADMIN, READ, SUBMIT, call, daemon, write
from watcher.api.acking import NewAck
from watcher.api.v1 import NewSilence, Submission
from watcher.config.load import load
from watcher.service.daemon import Daemon
from watcher.simulators.rsa_governance import RsaSimulator

DOC: dict[str, Any] = json.loads(
    resources.files("watcher.api").joinpath("openapi.json").read_text("utf-8")
)
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
BELOW = {"read": None, "submit": READ, "admin": SUBMIT}
"""A token of the scope just below each (none is below ``read``)."""
OF_SCOPE = {"read": READ, "submit": SUBMIT, "admin": ADMIN}
EXAMPLE = {"key": "gov//nope", "id": "999"}
"""What each path parameter is when the scopes are tried."""


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every documented (method, path, operation), the method upper-case."""
    for path, item in DOC["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method.upper(), path, operation


def response(path: str, method: str, status: int) -> dict[str, Any]:
    """The documented response, its ``$ref`` followed; KeyError for one not documented. A
    ``HEAD`` is its ``GET``'s (aiohttp answers one for every ``GET``)."""
    operation = DOC["paths"][path]["get" if method == "HEAD" else method.lower()]
    answer: dict[str, Any] = operation["responses"][str(status)]
    if "$ref" in answer:
        answer = DOC["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    return answer


def closed(schema: Any) -> Any:
    """``schema`` with every object that lists its properties closed to others: a field a
    response holds that the document does not name fails (the published document leaves
    them open, for readers of a later version)."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    shut = {key: closed(value) for key, value in schema.items()}
    if "properties" in shut and "additionalProperties" not in shut:
        shut["additionalProperties"] = False
    return shut


COMPONENTS = closed(copy.deepcopy(DOC["components"]))


def check_body(path: str, method: str, status: int, body: Any) -> None:
    """``body`` is what the document says ``method path`` answers with ``status``."""
    content = response(path, method, status).get("content", {})
    if "application/json" in content and method != "HEAD":
        schema = {**content["application/json"]["schema"], "components": COMPONENTS}
        errors = [e.message for e in Draft202012Validator(schema).iter_errors(body)]
        assert not errors, (method, path, status, errors)


@pytest.fixture
async def rsa() -> AsyncIterator[RsaSimulator]:
    sim = RsaSimulator({"5733": ["Running", "Completed"], "77": ["Running"] * 10**6})
    await sim.start()
    yield sim
    await sim.stop()


async def ask(
    url: str, method: str, path: str, token: str | None = None, **kwargs: Any
) -> tuple[int, Any, Any]:
    """:func:`call`, never following a redirect, from a client address of its own (through
    the trusted proxy ``listening`` names): the refusals asked for on purpose stay within
    each address's free failed attempts."""
    n = next(_CLIENTS)
    client = f"10.0.{n // 250}.{n % 250 + 1}"
    headers = {**kwargs.pop("headers", {}), "X-Forwarded-For": client}
    return await call(url, method, path, token, allow_redirects=False, headers=headers, **kwargs)


_CLIENTS = itertools.count()


@asynccontextmanager
async def listening(folder: Path, hook: str, remote: str) -> AsyncIterator[tuple[Daemon, str]]:
    """A daemon whose listener answers ``/metrics`` too: every route there is."""
    path = write(folder, hook, remote, trusted_proxies=["127.0.0.1"])
    address = load(path, {"CI_TOKEN": SUBMIT}).api.listen  # type: ignore[union-attr]
    text = path.read_text("utf-8").replace("[daemon]\n", f'[daemon]\nmetrics = "{address}"\n')
    path.write_text(text, "utf-8")
    async with daemon(path) as (service, url):
        yield service, url


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(DOC)
    assert DOC["openapi"].startswith("3.1.")


@pytest.mark.parametrize(
    ("model", "name"), [(Submission, "Submission"), (NewSilence, "NewSilence"), (NewAck, "NewAck")]
)
def test_the_request_bodies_are_the_fields_the_models_take(
    model: type[BaseModel], name: str
) -> None:
    schema = DOC["components"]["schemas"][name]
    fields = {field.alias or key: field for key, field in model.model_fields.items()}
    assert set(schema["properties"]) == set(fields)
    assert set(schema["required"]) == {key for key, f in fields.items() if f.is_required()}
    assert schema["additionalProperties"] is False  # the models forbid unknown fields


def test_each_operation_names_its_scope_in_x_scope_and_its_security() -> None:
    for method, path, operation in operations():
        scope = operation.get("x-scope")
        if scope is None:
            assert operation["security"] == [], (method, path)
        else:
            assert {"bearer": [scope]} in operation["security"], (method, path)


async def test_every_route_the_listener_registers_is_documented_and_nothing_more(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    async with listening(tmp_path, receiver.url, rsa.url) as (service, _):
        assert service.api is not None
        routes = {(r.method, r.resource.canonical) for r in service.api.app().router.routes()}
    heads = {(m, path) for m, path in routes if m == "HEAD"}
    assert {("GET", path) for _, path in heads} <= routes  # aiohttp's HEAD of each GET
    assert {path for m, path in routes if m == "GET"} == {path for _, path in heads}
    assert routes - heads == {(method, path) for method, path, _ in operations()}


async def test_the_scope_each_operation_names_is_the_one_it_takes(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    async with listening(tmp_path, receiver.url, rsa.url) as (_, url):
        for method, path, operation in operations():
            if (scope := operation.get("x-scope")) is None:
                continue
            concrete = path.format(**EXAMPLE)
            body = {"json": {}} if method == "POST" else {}
            tries = [(None, 401), (BELOW[scope], 403), (OF_SCOPE[scope], None)]
            for token, refused in tries:
                if token is None and refused == 403:
                    continue
                status, answer, _ = await ask(url, method, concrete, token, **body)
                if path in ("/", "/watch") and token is None:
                    continue  # the page shows the sign-in form, or sends a visitor to it
                if refused is None:
                    assert status not in (401, 403), (method, path, status)
                else:
                    assert status == refused, (method, path, token, status)
                assert str(status) in operation["responses"], (method, path, status)
                check_body(path, method, status, answer)


# (method, the documented path, the path asked, token, body, the status answered); in order:
# the later rows read what the earlier made
TABLE: list[tuple[str, str, str, str | None, Any, int]] = [
    ("GET", "/healthz", "/healthz", None, None, 200),
    ("HEAD", "/healthz", "/healthz", None, None, 200),
    ("GET", "/api/v1/openapi.json", "/api/v1/openapi.json", READ, None, 200),
    ("GET", "/api/v1/openapi.json", "/api/v1/openapi.json", None, None, 401),
    ("GET", "/api/v1/watches", "/api/v1/watches", None, None, 401),
    ("GET", "/api/v1/watches", "/api/v1/watches?limit=0", READ, None, 422),
    ("GET", "/api/v1/watches", "/api/v1/watches?cursor=nope", READ, None, 422),
    ("POST", "/api/v1/watches", "/api/v1/watches", READ, {"server": "gov", "id": "77"}, 403),
    ("POST", "/api/v1/watches", "/api/v1/watches", SUBMIT, {"server": "gov", "id": "77"}, 201),
    ("POST", "/api/v1/watches", "/api/v1/watches", SUBMIT, {"server": "gov", "id": "77"}, 200),
    ("POST", "/api/v1/watches", "/api/v1/watches", SUBMIT, {"server": "gov", "id": "5733"}, 201),
    ("POST", "/api/v1/watches", "/api/v1/watches", SUBMIT, {"server": "gov", "bogus": 1}, 422),
    ("POST", "/api/v1/watches", "/api/v1/watches", SUBMIT, b"{nope", 400),
    ("POST", "/api/v1/watches", "/api/v1/watches", SUBMIT, [{"server": "gov", "id": "9"}], 200),
    ("POST", "/api/v1/watches", "/api/v1/watches", SUBMIT, [{"server": "gov"}] * 501, 413),
    ("POST", "/api/v1/watches", "/api/v1/watches", SUBMIT, b'"a run"', 400),
    ("POST", "/api/v1/watches", "/api/v1/watches", SUBMIT, {"server": "x" * 70_000}, 413),
    (
        "POST",
        "/api/v1/watches",
        "/api/v1/watches",
        SUBMIT,
        {"server": "gov", "id": "77", "name": "other"},
        409,
    ),
    ("GET", "/api/v1/watches", "/api/v1/watches?limit=1", READ, None, 200),
    ("GET", "/api/v1/watches/{key}", "/api/v1/watches/gov//77", READ, None, 200),
    ("GET", "/api/v1/watches/{key}", "/api/v1/watches/gov//nope", READ, None, 404),
    ("DELETE", "/api/v1/watches/{key}", "/api/v1/watches/gov//77", READ, None, 403),
    ("DELETE", "/api/v1/watches/{key}", "/api/v1/watches/gov//77", SUBMIT, None, 200),
    ("DELETE", "/api/v1/watches/{key}", "/api/v1/watches/gov//nope", SUBMIT, None, 404),
    ("POST", "/api/v1/silences", "/api/v1/silences", SUBMIT, {"match": "gov", "for": "1h"}, 403),
    ("POST", "/api/v1/silences", "/api/v1/silences", ADMIN, {"match": "gov", "for": "0"}, 422),
    ("POST", "/api/v1/silences", "/api/v1/silences", ADMIN, {"match": "gov", "for": "1h"}, 201),
    ("GET", "/api/v1/silences", "/api/v1/silences", READ, None, 200),
    ("DELETE", "/api/v1/silences/{id}", "/api/v1/silences/{made}", ADMIN, None, 200),
    ("DELETE", "/api/v1/silences/{id}", "/api/v1/silences/{made}", ADMIN, None, 404),
    ("POST", "/api/v1/acks", "/api/v1/acks", SUBMIT, {"match": "gov//5733"}, 404),
    ("POST", "/api/v1/acks", "/api/v1/acks", SUBMIT, {"watch": "gov"}, 422),
    ("GET", "/api/v1/acks", "/api/v1/acks", READ, None, 200),
    ("GET", "/metrics", "/metrics", None, None, 401),
    ("GET", "/metrics", "/metrics", READ, None, 200),
    ("GET", "/", "/", None, None, 200),
    ("GET", "/", "/", READ, None, 200),
    ("GET", "/watch", "/watch?key=gov//77", None, None, 303),
    ("GET", "/watch", "/watch?key=gov//nope", READ, None, 404),
    ("POST", "/sign-in", "/sign-in", None, {"token": "wrong"}, 401),
    ("POST", "/sign-in", "/sign-in", None, {"token": READ}, 303),
    ("POST", "/sign-out", "/sign-out", None, None, 303),
    ("POST", "/sign-out", "/sign-out", None, {"__site": "cross-site"}, 403),
    ("GET", "/page.css", "/page.css", None, None, 200),
    ("GET", "/favicon.ico", "/favicon.ico", None, None, 200),
]


def how(body: Any) -> dict[str, Any]:
    """The keyword arguments that send ``body`` as its row means it."""
    if body is None:
        return {}
    if isinstance(body, bytes):
        return {"data": body}
    if "token" in body:
        return {"data": body}  # a form
    if "__site" in body:
        return {"headers": {"Sec-Fetch-Site": body["__site"]}}
    return {"json": body}


async def test_the_codes_a_real_daemon_answers_are_the_documented_ones(
    tmp_path: Path, receiver: Receiver, rsa: RsaSimulator
) -> None:
    async with listening(tmp_path, receiver.url, rsa.url) as (_, url):
        made: dict[str, object] = {}
        for method, path, asked, token, body, expected in TABLE:
            status, answer, _ = await ask(url, method, asked.format(**made), token, **how(body))
            assert status == expected, (method, asked, status, answer)
            if path == "/api/v1/silences" and status == 201:
                made["made"] = answer["silence"]["id"]
            check_body(path, method, status, answer)
            if path == "/api/v1/openapi.json" and status == 200:
                assert answer == DOC  # served as kept
        status, answer, _ = await ask(url, "GET", "/healthz", headers={"Host": "rebound.example"})
        assert status == 421
        check_body("/healthz", "GET", status, answer)
