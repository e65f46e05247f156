"""What the contract tests share: reading a vendored spec under ``specs/`` and validating answers against it.

Each contract test module builds one ``Contract`` per spec it checks. A contract reads the spec three ways:

- ``published()``: the YAML as vendored (OpenAPI 3.0, or Swagger 2.0 with ``swagger=True``);
- ``document()``: as published, with the module's departures (``read``) where the spec contradicts itself
  or AEP's guides;
- ``strict_document()``: ``document()`` closed by the module's ``strict`` overlay, which states what
  audiencehub promises (properties required, nothing else allowed).

The overlays are the modules' own: functions that edit a deep copy of the document in place. Validation is
Draft 7 through a ``referencing`` registry that holds the documents under ``urn:`` URIs, so ``$ref``s inside
them resolve; OpenAPI's annotations (``example``, ``description``) are ignored and its ``format``s are checked
only by the format checker a module passes (``format_checker()`` builds one).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient
from httpx import Response
from jsonschema import Draft7Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT7

SPECS = Path(__file__).parent / "specs"

Overlay = Callable[[dict[str, Any]], None]


@cache
def load_spec(name: str, *, swagger: bool = False) -> dict[str, Any]:
    """``specs/<name>.yaml`` as published. Shared between modules: never edit it, edit a deep copy."""
    loaded: dict[str, Any] = yaml.safe_load((SPECS / f"{name}.yaml").read_text())
    if swagger:
        assert loaded["swagger"] == "2.0", loaded.get("swagger")
    else:
        assert str(loaded["openapi"]).startswith("3.0"), loaded["openapi"]
    return loaded


# -- formats -------------------------------------------------------------------------------------


def _is_int64(value: object) -> bool:
    return not isinstance(value, int) or isinstance(value, bool) or -(2**63) <= value <= 2**63 - 1


def _is_int32(value: object) -> bool:
    return not isinstance(value, int) or isinstance(value, bool) or -(2**31) <= value < 2**31


OPENAPI_FORMATS: dict[str, Callable[[object], bool]] = {"int64": _is_int64, "int32": _is_int32}


def format_checker(*names: str, **checks: Callable[[object], bool]) -> FormatChecker:
    """Every format ``jsonschema`` knows, plus the OpenAPI ``names`` (``int64``, ``int32``) and ``checks``."""
    checker = FormatChecker()
    for name, check in {**{n: OPENAPI_FORMATS[n] for n in names}, **checks}.items():
        checker.checks(name)(check)
    return checker


# -- the contract --------------------------------------------------------------------------------


class Contract:
    """A vendored spec as published, as read (``read``), and as closed by a strict overlay (``strict``)."""

    def __init__(
        self,
        name: str,
        *,
        read: Overlay | None = None,
        strict: Overlay | None = None,
        checker: FormatChecker | None = None,
        swagger: bool = False,
    ) -> None:
        self.name = name
        self.uri = f"urn:adobe:{name}"
        self.strict_uri = f"urn:audiencehub:{name}-strict"
        self._read, self._strict, self._checker, self._swagger = read, strict, checker, swagger
        self._pointer = "definitions" if swagger else "components/schemas"

    # -- the documents

    def published(self) -> dict[str, Any]:
        return load_spec(self.name, swagger=self._swagger)

    def document(self) -> dict[str, Any]:
        """The spec as published, with the departures of ``read`` (the published one itself without)."""
        return self._document

    def strict_document(self) -> dict[str, Any]:
        assert self._strict is not None, f"{self.name} has no strict overlay"
        return self._strict_document

    @cached_property
    def _document(self) -> dict[str, Any]:
        if self._read is None:
            return self.published()
        doc = copy.deepcopy(self.published())
        self._read(doc)
        return doc

    @cached_property
    def _strict_document(self) -> dict[str, Any]:
        assert self._strict is not None
        doc = copy.deepcopy(self.document())
        self._strict(doc)
        return doc

    def _schemas_of(self, doc: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = doc
        for key in self._pointer.split("/"):
            found = found[key]
        return found

    def schemas(self) -> dict[str, Any]:
        """The component schemas (Swagger: definitions) of ``document()``."""
        return self._schemas_of(self.document())

    def operation(self, path: str, method: str) -> dict[str, Any]:
        found: dict[str, Any] = self.published()["paths"][path][method]
        return found

    def success_codes(self, path: str, method: str) -> set[int]:
        """The 2xx statuses the spec declares for an operation."""
        return {int(code) for code in self.document()["paths"][path][method]["responses"] if str(code).startswith("2")}

    # -- validation

    @cached_property
    def registry(self) -> Registry:
        resources = [(self.uri, DRAFT7.create_resource(self.document()))]
        if self._strict is not None:
            resources.append((self.strict_uri, DRAFT7.create_resource(self.strict_document())))
        return Registry().with_resources(resources)

    def errors_against(self, schema: dict[str, Any], instance: Any) -> list[str]:
        """Where ``instance`` breaks ``schema``, whose ``$ref``s may point into the documents by their URIs."""
        validator = Draft7Validator(schema, registry=self.registry, format_checker=self._checker)
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(instance)
        ]

    def errors(self, name: str, instance: Any, *, strict: bool = False) -> list[str]:
        """Where ``instance`` breaks the schema ``name`` of ``document()`` (``strict_document()`` with ``strict``)."""
        doc = self.strict_document() if strict else self.document()
        assert name in self._schemas_of(doc), f"{name} is not a schema of {self.name}"
        uri = self.strict_uri if strict else self.uri
        return self.errors_against({"$ref": f"{uri}#/{self._pointer}/{name}"}, instance)

    def assert_conforms(
        self, name: str, instance: Any, *, strict_name: str | None = None, as_published: bool = True
    ) -> None:
        """``instance`` is valid against ``name`` as read (unless not ``as_published``) and, with a strict
        overlay, against its ``strict_name`` (``name`` by default)."""
        if as_published:
            assert self.errors(name, instance) == [], (name, instance)
        if self._strict is not None:
            assert self.errors(strict_name or name, instance, strict=True) == [], (name, instance)

    def response_schema(self, path: str, method: str, status: int | str = 200, *, strict: bool = False) -> Any:
        """An operation's JSON answer schema, its ``$ref``s pointed into ``document()`` or ``strict_document()``."""
        responses = {str(code): answer for code, answer in self.document()["paths"][path][method]["responses"].items()}
        found = responses[str(status)]["content"]["application/json"]["schema"]
        uri = self.strict_uri if strict else self.uri
        return yaml.safe_load(yaml.safe_dump(found).replace("'#/components/", f"'{uri}#/components/"))

    def assert_answer_conforms(self, path: str, method: str, status: int | str, instance: Any) -> None:
        """``instance`` is valid against the operation's answer schema, as read and as closed."""
        for strict in (False, True) if self._strict is not None else (False,):
            found = self.errors_against(self.response_schema(path, method, status, strict=strict), instance)
            assert found == [], (path, method, strict, found)

    def example_of(self, schema: dict[str, Any]) -> Any:
        """A value built from the ``example`` annotations of ``schema``, following ``$ref``s into the spec;
        optional properties without one are left out."""
        if "$ref" in schema:
            return self.example_of(self.schemas()[schema["$ref"].rsplit("/", 1)[-1]])
        if "example" in schema:
            return copy.deepcopy(schema["example"])
        if schema.get("type") == "object" or "properties" in schema:
            out = {}
            for key, sub in schema.get("properties", {}).items():
                try:
                    out[key] = self.example_of(sub)
                except LookupError:
                    if key in schema.get("required", []):
                        raise
            return out
        raise LookupError(f"no example for {schema}")


# -- the app -------------------------------------------------------------------------------------


def shape(path: str) -> str:
    """A path with its parameters unnamed and no trailing slash: ``/a/{id}/`` and ``/a/{x}`` are both ``/a/{}``."""
    return re.sub(r"\{[^}]+\}", "{}", path).rstrip("/")


def our_operation_ids(
    client: TestClient, under: str = "", *, strip: str = "", key: Callable[[str], str] = shape
) -> dict[tuple[str, str], str | None]:
    """The operationId of each (path, method) of our OpenAPI under ``under``; paths lose ``strip``, then ``key``."""
    return {
        (key(path.removeprefix(strip)), method): op.get("operationId")
        for path, item in client.app.openapi()["paths"].items()  # type: ignore[attr-defined]
        if path.startswith(under)
        for method, op in item.items()
    }


def json_body(resp: Response, status: int = 200) -> Any:
    """The JSON of an answer that must have ``status``."""
    assert resp.status_code == status, resp.text
    return resp.json()
