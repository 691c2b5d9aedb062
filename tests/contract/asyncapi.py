"""docs/asyncapi.yaml loaded once, with validators for its message payloads and for the document itself.

The AsyncAPI 3.0.0 JSON Schema comes from the npm package @asyncapi/specs, which
scripts/check-deploy fetches (pinned version and checksum) into .cache/.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema
import pytest
import referencing
import referencing.jsonschema
import yaml

from tests.contract.chart import REPO

DOCUMENT = REPO / "docs" / "asyncapi.yaml"
DOCUMENT_URI = "urn:livechat-notifier:asyncapi"
SPECS_VERSION = "6.11.1"
SPEC_SCHEMA = REPO / ".cache" / f"asyncapi-specs-{SPECS_VERSION}" / "schemas" / "3.0.0.json"


@cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text())
    return loaded


def messages() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = document()["components"]["messages"]
    return found


def resolve(pointer: str) -> Any:
    """A `#/...` JSON pointer inside the document."""
    assert pointer.startswith("#/"), pointer
    node: Any = document()
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


@cache
def _registry() -> referencing.Registry[Any]:
    resource = referencing.Resource.from_contents(
        document(), default_specification=referencing.jsonschema.DRAFT7
    )
    registry: referencing.Registry[Any] = referencing.Registry().with_resource(DOCUMENT_URI, resource)
    return registry


@cache
def payload_validator(message: str) -> jsonschema.Draft7Validator:
    """Validates a record value (parsed JSON) against components.messages.<message>.payload."""
    schema = {"$ref": f"{DOCUMENT_URI}#/components/messages/{message}/payload"}
    return jsonschema.Draft7Validator(schema, registry=_registry())


@cache
def headers_validator(message: str) -> jsonschema.Draft7Validator:
    schema = {"$ref": f"{DOCUMENT_URI}#/components/messages/{message}/headers"}
    return jsonschema.Draft7Validator(schema, registry=_registry())


def payload_errors(message: str, value: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in payload_validator(message).iter_errors(value)
    ]


@cache
def spec_validator() -> jsonschema.Draft7Validator:
    """The official AsyncAPI 3.0.0 schema, with its bundled definitions registered by their $id."""
    if not SPEC_SCHEMA.is_file():
        pytest.fail(f"{SPEC_SCHEMA.relative_to(REPO)} is missing: run scripts/check-deploy, which fetches it")
    schema = json.loads(SPEC_SCHEMA.read_text())
    registry: referencing.Registry[Any] = referencing.Registry()
    for uri, definition in {schema["$id"]: schema, **schema["definitions"]}.items():
        resource = referencing.Resource.from_contents(
            definition, default_specification=referencing.jsonschema.DRAFT7
        )
        registry = registry.with_resource(uri, resource)
    return jsonschema.Draft7Validator(schema, registry=registry)


def message_by_type() -> dict[str, str]:
    """CloudEvents type -> message name, for messages whose payload is a CloudEvent."""
    by_type = {}
    for name, message in messages().items():
        pointer = message["payload"].get("$ref")
        if pointer is None:
            continue
        branches = resolve(pointer)["allOf"]
        (event_type,) = [
            b["properties"]["type"]["const"]
            for b in branches
            if "const" in b.get("properties", {}).get("type", {})
        ]
        by_type[event_type] = name
    return by_type


def data_schema(message: str) -> dict[str, Any]:
    """The JSON Schema of `data` of a CloudEvents message (resolved)."""
    branches = resolve(messages()[message]["payload"]["$ref"])["allOf"]
    (data,) = [b["properties"]["data"] for b in branches if "data" in b.get("properties", {})]
    resolved: dict[str, Any] = resolve(data["$ref"])
    return resolved
