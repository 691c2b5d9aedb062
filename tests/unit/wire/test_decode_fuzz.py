"""Hostile input on the decoding layer, property-based: whatever bytes other teams' services write,
`decode_chat_event`, `decode_agent` and `decode_site` return a domain value (with the repairs of
its optional fields, each one its type declares) or a typed `Rejection`, and never raise.

Three kinds of input: arbitrary bytes; arbitrary JSON documents; and near-valid events — valid
CloudEvents of every consumed type, mutated (fields removed, retyped, made huge, nested deeply,
wrapped, unknown fields added, bytes flipped or cut). Every rejection must also be fit for a log
line and a dead-letter header: a known reason, a bounded UTF-8 detail.

The budget is fixed (`derandomize=True`: the same examples on every run, no example database),
so CI time stays bounded: 800 examples per property, about 5 s in all on a 2-core machine.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.domain.events import AgentJoined, AgentSnapshot, ChatEnded, HandoffRequested, SiteSnapshot
from service.wire.inbound import (
    EVENT_TYPE_NAMES,
    MAX_DETAIL_CHARS,
    REPAIRABLE,
    SITE_UPDATED,
    DecodeLimits,
    decode_agent,
    decode_chat_event,
    decode_site,
)
from service.wire.rejection import Reason, Rejection
from service.wire.repair import Decoded

LIMITS = DecodeLimits(max_value_bytes=64 * 1024)
NOW = 1_800_000_000_000
AT = "2027-01-15T08:00:00Z"  # NOW

budget = settings(
    max_examples=800,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _event(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "ev-1",
        "source": "urn:test",
        "type": event_type,
        "time": AT,
        "data": data,
    }


VALID: dict[str, tuple[bytes, dict[str, Any]]] = {
    "handoff": (
        b"c1",
        _event(
            "livechat.chat.handoff_requested",
            {
                "chat_id": "c1",
                "site_id": "s1",
                "requested_at": AT,
                "visitor": {"name": "Ada", "email": "ada@visitor.example"},
                "time_to_accept_seconds": 60,
            },
        ),
    ),
    "joined": (
        b"c1",
        _event(
            "livechat.chat.agent_joined",
            {"chat_id": "c1", "site_id": "s1", "agent_id": "a1", "joined_at": AT},
        ),
    ),
    "ended": (
        b"c1",
        _event("livechat.chat.ended", {"chat_id": "c1", "site_id": "s1", "ended_at": AT, "reason": "bye"}),
    ),
    "agent": (
        b"a1",
        _event(
            "livechat.agent.updated",
            {
                "agent_id": "a1",
                "account_id": "acct",
                "live_chat_available": True,
                "sites": [{"site_id": "s1", "push_enabled": True}],
                "devices": [
                    {"device_id": "d1", "provider": "fcm", "token": "t1"},
                    {"device_id": "d2", "provider": "apns", "token": "t2", "apns_environment": "sandbox"},
                ],
            },
        ),
    ),
    "site": (
        b"s1",
        _event(
            "livechat.site.updated",
            {
                "site_id": "s1",
                "account_id": "acct",
                "name": "Alpine Tours",
                "time_to_accept_seconds": 90,
                "contact": {"email": "hi@alpine.example", "phone": "+41"},
                "missed_message": "Sorry! {contact_email}",
            },
        ),
    ),
}

DOMAIN_TYPES = (HandoffRequested, AgentJoined, ChatEnded, AgentSnapshot, SiteSnapshot)


def decode_all(key: bytes | None, value: bytes | None) -> list[object]:
    """The value through every decoder (null only to decode_chat_event: elsewhere it is a tombstone).

    A decoded value comes with the repairs it needed; each must be one its type declares (it is a
    metric label) and the value itself must still be a domain value."""
    results: list[object] = [_unwrap(decode_chat_event(key, value, NOW, LIMITS))]
    if value is not None:
        results += [decode_agent(key, value, LIMITS), _unwrap(decode_site(key, value, LIMITS))]
    return results


def _unwrap(result: object) -> object:
    if not isinstance(result, Decoded):
        return result
    type_name = EVENT_TYPE_NAMES.get(type(result.value), SITE_UPDATED)
    assert set(result.repairs) <= set(REPAIRABLE.get(type_name, ())), result.repairs
    return result.value


def assert_domain_value_or_rejection(result: object) -> None:
    if isinstance(result, Rejection):
        assert isinstance(result.reason, Reason)
        assert isinstance(result.detail, str)
        assert len(result.detail) <= MAX_DETAIL_CHARS
        result.detail.encode()  # a dead-letter header: must be valid UTF-8
        for identifier in (result.chat_id, result.site_id, result.agent_id):
            assert identifier is None or 0 < len(identifier.encode()) <= 1024
        return
    assert isinstance(result, DOMAIN_TYPES), f"neither a domain value nor a Rejection: {result!r}"
    # Events are dataclasses; agent snapshots and devices are msgspec Structs (directory scale).
    names = (
        [field.name for field in dataclasses.fields(result)]
        if dataclasses.is_dataclass(result)
        else list(result.__struct_fields__)
    )
    for name in names:
        value = getattr(result, name)
        if isinstance(value, str):
            value.encode()  # keys of changelog records and push payloads: must be valid UTF-8


def test_every_valid_example_decodes() -> None:
    """The seeds of the mutations are valid, so what the mutations find is about the mutation."""
    decoders: dict[str, Callable[[bytes, bytes], object]] = {
        "handoff": lambda k, v: decode_chat_event(k, v, NOW, LIMITS),
        "joined": lambda k, v: decode_chat_event(k, v, NOW, LIMITS),
        "ended": lambda k, v: decode_chat_event(k, v, NOW, LIMITS),
        "agent": lambda k, v: decode_agent(k, v, LIMITS),
        "site": lambda k, v: decode_site(k, v, LIMITS),
    }
    for name, (key, event) in VALID.items():
        result = decoders[name](key, json.dumps(event).encode())
        if isinstance(result, Decoded):
            assert result.repairs == (), name
            result = result.value
        assert isinstance(result, DOMAIN_TYPES), name


# ----------------------------------------------------------------------------------- arbitrary input

keys = st.none() | st.binary(max_size=40) | st.sampled_from([b"c1", b"a1", b"s1", b"\xff"])


@budget
@given(key=keys, value=st.none() | st.binary(max_size=2_000))
def test_arbitrary_bytes(key: bytes | None, value: bytes | None) -> None:
    for result in decode_all(key, value):
        assert_domain_value_or_rejection(result)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=25,
)


@budget
@given(key=keys, document=json_values)
def test_arbitrary_json(key: bytes | None, document: Any) -> None:
    for result in decode_all(key, json.dumps(document).encode()):
        assert_domain_value_or_rejection(result)


# ------------------------------------------------------------------------------- near-valid input


@dataclasses.dataclass(frozen=True)
class Deep:
    """A value nested `depth` arrays deep, written out as text (json.dumps itself recurses)."""

    depth: int


def to_json(document: Any) -> bytes:
    def marker(value: object) -> str:
        assert isinstance(value, Deep)
        return f"@deep:{value.depth}@"

    text = json.dumps(document, default=marker)
    for depth in {int(part.split("@")[0]) for part in text.split('"@deep:')[1:]}:
        text = text.replace(f'"@deep:{depth}@"', "[" * depth + '"leaf"' + "]" * depth)
    return text.encode()


HOSTILE_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    2**63,
    -(2**63) - 1,
    10**30,
    1e308,
    "",
    " ",
    "\u0000",
    "\ud7ff\ue000",
    "x" * 300,
    "x" * 5_000,
    "t" * 40_000,
    "yesterday",
    "2027-01-15T08:00:00",  # no offset
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "1.0",
    "fcm ",
    "hms",
    "sandbox",
    [],
    {},
    {"nested": {"deeper": [1, {"x": None}]}},
    [AT, AT],
    Deep(200),
    Deep(3_000),
]
replacements = st.sampled_from(HOSTILE_VALUES) | json_values
OPERATIONS = ["remove", "replace", "replace", "wrap", "nest", "add"]


def paths(document: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every place in a JSON document, the root included."""
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths(value, (*prefix, index))
    return found


def mutate(document: Any, path: tuple[str | int, ...], operation: str, replacement: Any) -> Any:
    """A copy of `document` with the value at `path` removed, replaced, wrapped, nested or extended."""
    copy: Any = {"root": _copy(document)}
    container = copy
    last: str | int = "root"
    for part in path:
        container, last = container[last], part
    if operation == "remove" and container is not copy:
        del container[last]
    elif operation == "wrap":
        container[last] = [container[last]]
    elif operation == "nest":
        container[last] = {"value": container[last], "deep": Deep(2_000)}
    elif operation == "add" and isinstance(container[last], dict):
        container[last][f"unknown_{len(container[last])}"] = replacement
    elif operation == "add" and isinstance(container[last], list):
        container[last].append(replacement)
    else:
        container[last] = replacement
    return copy["root"]


def _copy(document: Any) -> Any:
    if isinstance(document, dict):
        return {key: _copy(value) for key, value in document.items()}
    if isinstance(document, list):
        return [_copy(value) for value in document]
    return document


@st.composite
def near_valid(draw: st.DrawFn) -> tuple[bytes | None, bytes]:
    key, document = draw(st.sampled_from(list(VALID.values())))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(paths(document)))
        document = mutate(document, path, draw(st.sampled_from(OPERATIONS)), draw(replacements))
    data = document.get("data") if isinstance(document, dict) else None
    own_id = (
        data.get("chat_id", data.get("agent_id", data.get("site_id"))) if isinstance(data, dict) else None
    )
    key = draw(st.sampled_from([key, None, b"other", str(own_id).encode(errors="replace")]))
    return key, to_json(document)


@budget
@given(record=near_valid())
def test_mutated_valid_events(record: tuple[bytes | None, bytes]) -> None:
    key, value = record
    for result in decode_all(key, value):
        assert_domain_value_or_rejection(result)


@st.composite
def damaged_bytes(draw: st.DrawFn) -> bytes:
    """Valid event bytes cut short, with bytes flipped, or with junk spliced in."""
    _, document = draw(st.sampled_from(list(VALID.values())))
    value = bytearray(to_json(document))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        position = draw(st.integers(min_value=0, max_value=len(value)))
        kind = draw(st.sampled_from(["cut", "flip", "splice"]))
        if kind == "cut":
            del value[position:]
        elif kind == "flip" and position < len(value):
            value[position] = draw(st.integers(min_value=0, max_value=255))
        else:
            junk = st.binary(max_size=12) | st.sampled_from(
                [b"[" * 1500, b'{"a":' * 1500, b"\\ud800", b"\xc3"]
            )
            value[position:position] = draw(junk)
    return bytes(value)


@budget
@given(key=keys, value=damaged_bytes())
def test_damaged_bytes_of_valid_events(key: bytes | None, value: bytes) -> None:
    for result in decode_all(key, value):
        assert_domain_value_or_rejection(result)


@pytest.mark.parametrize("depth", [10, 900, 1_000, 5_000, 100_000])
@pytest.mark.parametrize("where", ["value", "data", "unknown envelope field", "unknown visitor field"])
def test_nesting_at_any_depth_and_place(depth: int, where: str) -> None:
    handoff = VALID["handoff"][1]
    documents = {
        "value": Deep(depth),
        "data": _event("livechat.chat.ended", {}) | {"data": Deep(depth)},
        "unknown envelope field": handoff | {"extra": Deep(depth)},
        "unknown visitor field": handoff
        | {"data": handoff["data"] | {"visitor": {"name": "A", "x": Deep(depth)}}},
    }
    for result in decode_all(b"c1", to_json(documents[where])):
        assert_domain_value_or_rejection(result)
