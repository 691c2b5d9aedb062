"""docs/asyncapi.yaml is a valid AsyncAPI 3.0 document, and the worker agrees with it.

* The document validates against the official AsyncAPI 3.0.0 JSON Schema, and its references resolve.
* Events built by devtools/traffic.py (what the tests and the demo produce) validate against the
  payload schemas; the worker's decoders accept every example in the document; removing a field
  or giving it the wrong type is refused by the schema and by the decoder alike.
* What the worker writes — Missed, chatbot command, token rejection, produced by the pure core
  from traffic-built inputs and encoded by service/wire/outbound.py — validates too, and the topic
  names, event types and dead-letter headers are the worker's own.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from devtools import traffic
from service.domain.decide import Policy, World, on_chat_event, on_timer, on_token_rejected
from service.domain.directory import AgentDirectory, SiteDirectory
from service.domain.effects import EmitChatbotMessage, EmitMissed, EmitTokenRejected, PutState
from service.domain.events import AgentSnapshot, HandoffRequested, SiteSnapshot, TokenRejection
from service.domain.push import Provider
from service.domain.rounds import PendingRound
from service.partition.rejections import RejectionReporter, dead_letter_headers
from service.settings import Settings
from service.wire import commands, inbound, outbound
from service.wire.inbound import DecodeLimits, decode_agent, decode_chat_event, decode_site
from service.wire.redaction import Redaction
from service.wire.rejection import Reason, Rejection
from service.wire.repair import Decoded
from service.wire.snapshots import decode_agent_with_repairs
from tests.contract.asyncapi import (
    data_schema,
    document,
    headers_validator,
    message_by_type,
    messages,
    payload_errors,
    resolve,
    spec_validator,
)
from tests.contract.chart import REPO

LIMITS = DecodeLimits()
T0 = 1_795_000_000_000  # 2026-11-18, a fixed "now"
CHANNEL_SETTINGS = {
    "chatEvents": "topic_chat_events",
    "agents": "topic_agents",
    "sites": "topic_sites",
    "chatMissed": "topic_missed",
    "chatbotCommands": "topic_chatbot",
    "pushFeedback": "topic_push_feedback",
    "deadLetter": "topic_dead_letter",
    "roundsChangelog": "topic_changelog",
    "notifierCommands": "topic_commands",
}
CONSUMED = {
    inbound.HANDOFF_REQUESTED: "HandoffRequested",
    inbound.AGENT_JOINED: "AgentJoined",
    inbound.CHAT_ENDED: "ChatEnded",
    inbound.AGENT_UPDATED: "AgentUpdated",
    inbound.SITE_UPDATED: "SiteUpdated",
    commands.TEST_REQUESTED: "TestPushRequested",
}
PRODUCED = {
    outbound.CHAT_MISSED: "ChatMissed",
    outbound.CHATBOT_SEND_MESSAGE: "ChatbotSendMessage",
    outbound.TOKEN_REJECTED: "TokenRejected",
    commands.TEST_RESULT: "TestPushResult",
}


# --- the document itself ------------------------------------------------------------------------


def _spec_errors(candidate: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in spec_validator().iter_errors(candidate)
    ]


def test_document_is_valid_asyncapi_3() -> None:
    assert document()["asyncapi"] == "3.0.0"
    assert _spec_errors(document()) == []


@pytest.mark.parametrize(
    "damage",
    ["operation-action", "channel-address", "unknown-field", "binding-version"],
)
def test_spec_validation_catches_a_damaged_document(damage: str) -> None:
    """The spec check above is not vacuous: typical mistakes fail it."""
    broken = copy.deepcopy(document())
    if damage == "operation-action":
        broken["operations"]["consumeChatEvents"]["action"] = "subscribe"  # AsyncAPI 2 wording
    elif damage == "channel-address":
        broken["channels"]["agents"]["address"] = 42
    elif damage == "unknown-field":
        broken["components"]["messages"]["ChatMissed"]["example"] = {}
    else:
        broken["channels"]["sites"]["bindings"]["kafka"]["bindingVersion"] = "9.9.9"
    assert _spec_errors(broken) != []


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _references(value)]
    return []


def test_every_reference_resolves() -> None:
    references = _references(document())
    assert len(references) > 50
    for reference in references:
        resolve(reference)


def test_topics_are_the_workers_defaults() -> None:
    channels = document()["channels"]
    defaults = {
        name: field.default for name, field in Settings.model_fields.items() if name.startswith("topic_")
    }
    assert {channels[channel]["address"]: setting for channel, setting in CHANNEL_SETTINGS.items()} == {
        topic: name for name, topic in defaults.items()
    }
    for channel in channels.values():
        assert channel["bindings"]["kafka"]["topic"] == channel["address"]


def test_event_types_are_the_workers() -> None:
    assert message_by_type() == CONSUMED | PRODUCED
    for event_type, name in message_by_type().items():
        assert messages()[name]["name"] == event_type


def test_dead_letter_headers_are_the_workers() -> None:
    schema = resolve(messages()["DeadLetter"]["headers"]["$ref"])
    assert schema["properties"]["reason"]["enum"] == [reason.value for reason in Reason]

    class Record:
        topic, partition, offset, timestamp, key, value = "livechat.chat-events", 3, 1842, T0, b"c1", b"{}"
        timestamp_type = 1

    headers = {
        name: value.decode() for name, value in dead_letter_headers(Record(), Rejection(Reason.BAD_DATA, "d"))
    }
    assert not list(headers_validator("DeadLetter").iter_errors(headers))
    assert list(headers) == schema["required"]
    assert schema["properties"]["redacted"]["enum"] == [redaction.value for redaction in Redaction]
    reporter = RejectionReporter("livechat.dead-letter", "event_rejected", redact_personal_data=True)

    class WithVisitor(Record):
        value = b'{"visitor": {"email": "ada@example.org"}}'

    class NotJson(Record):
        value = b"{not json"

    for record in (WithVisitor(), NotJson()):
        with capture_logs():
            dead = reporter.reject(record, Rejection(Reason.BAD_DATA, "d"))
        redacted = {name: value.decode() for name, value in dead.headers}
        assert "redacted" in redacted
        assert not list(headers_validator("DeadLetter").iter_errors(redacted))


@pytest.mark.parametrize("message", sorted(messages()))
def test_examples_validate_against_their_own_schemas(message: str) -> None:
    for example in messages()[message].get("examples", []):
        if "payload" in example and message != "DeadLetter":
            assert payload_errors(message, example["payload"]) == [], example["name"]
        if "headers" in example:
            assert not list(headers_validator(message).iter_errors(example["headers"])), example["name"]


# --- consumed: traffic builders, examples and the decoders ---------------------------------------


def _traffic_events() -> list[bytes]:
    device = traffic.device
    return [
        traffic.handoff_requested("chat-1", "site-1", T0),
        traffic.handoff_requested(
            "chat-2",
            "site-1",
            T0,
            visitor={"name": "Ada", "email": "ada@example.com"},
            time_to_accept_seconds=30,
        ),
        traffic.agent_joined("chat-1", "site-1", "agent-1", T0 + 1_000),
        traffic.chat_ended("chat-2", "site-1", T0 + 2_000),
        traffic.agent_updated(
            "agent-1",
            "acct-1",
            sites={"site-1": True, "site-2": False},
            devices=[device("d1", "fcm", "tok-1"), device("d2", "apns", "tok-2", "sandbox")],
        ),
        traffic.agent_updated("agent-2", "acct-1", available=False),
        traffic.site_updated("site-1", "acct-1", "Alpine Tours"),
        traffic.site_updated("site-2", "acct-1", "Glacier Walks", missed_message="Call {contact_phone}"),
        traffic.agent_updated("agent-3", "acct-1", display_name="Anna Keller"),
        traffic.site_updated("site-3", "acct-1", "Fjord Trips", reminder_after_seconds=30),
        traffic.push_test_requested("agent-1"),
        traffic.push_test_requested("agent-1", "d1"),
    ]


@pytest.mark.parametrize("value", _traffic_events(), ids=lambda value: json.loads(value)["type"])
def test_traffic_builders_write_what_the_document_describes(value: bytes) -> None:
    event = json.loads(value)
    assert payload_errors(CONSUMED[event["type"]], event) == []


def _as_is(decoded: object) -> bool:
    """Decoded without a repair: a record outside the schema is either rejected or, when only
    optional fields are unusable, used with those repaired and reported — never taken as is."""
    return isinstance(decoded, AgentSnapshot | commands.TestPushRequested) or (
        isinstance(decoded, Decoded) and not decoded.repairs
    )


def _decode(message: str, payload: dict[str, Any]) -> object:
    """The worker's decoder for `message`, fed the record the way Kafka would deliver it."""
    key_property = messages()[message]["x-key-property"]
    data = payload.get("data")
    key_value = data.get(key_property) if isinstance(data, dict) else None
    key = str(key_value).encode() if isinstance(key_value, str) else None
    value = json.dumps(payload).encode()
    if message == "AgentUpdated":
        return decode_agent_with_repairs(key, value, LIMITS)
    if message == "SiteUpdated":
        return decode_site(key, value, LIMITS)
    if message == "TestPushRequested":
        return commands.decode_command(key, value, LIMITS)
    # Chat events are checked against "now": take the event's own time, the decoder's age and skew
    # limits are policy, not schema.
    stamp = next(
        (data[f] for f in ("requested_at", "joined_at", "ended_at") if isinstance(data, dict) and f in data),
        None,
    )
    now_ms = int(datetime.fromisoformat(stamp).timestamp() * 1000) if isinstance(stamp, str) else T0
    return decode_chat_event(key, value, now_ms, LIMITS)


def _consumed_examples() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (message, example["name"], example["payload"])
        for message in CONSUMED.values()
        for example in messages()[message]["examples"]
    ]


def test_every_consumed_message_has_examples() -> None:
    assert {message for message, _, _ in _consumed_examples()} == set(CONSUMED.values())


@pytest.mark.parametrize(
    ("message", "name", "payload"), _consumed_examples(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_decoders_accept_every_example(message: str, name: str, payload: dict[str, Any]) -> None:
    decoded = _decode(message, payload)
    assert _as_is(decoded), f"{message} example {name}: {decoded}"


def _guide_events() -> list[dict[str, Any]]:
    guide = (REPO / "docs" / "integration-guide.md").read_text()
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", guide, flags=re.DOTALL)]


def test_integration_guide_examples_are_valid_and_accepted() -> None:
    events = _guide_events()
    assert {event["type"] for event in events} == {
        inbound.HANDOFF_REQUESTED,
        inbound.AGENT_UPDATED,
        inbound.SITE_UPDATED,
        commands.TEST_REQUESTED,
    }
    for event in events:
        message = CONSUMED[event["type"]]
        assert payload_errors(message, event) == [], event["id"]
        assert _as_is(_decode(message, event)), event["id"]


def _wrong_type(schema: dict[str, Any]) -> object:
    resolved = resolve(schema["$ref"]) if "$ref" in schema else schema
    types = resolved.get("type", "string")
    return 12345 if "string" in types or "enum" in resolved else "not-the-right-type"


@pytest.mark.parametrize(
    ("message", "name", "payload"), _consumed_examples(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_schema_and_decoder_agree_on_what_is_required_and_typed(
    message: str, name: str, payload: dict[str, Any]
) -> None:
    schema = data_schema(message)
    for field, field_schema in schema["properties"].items():
        if field not in payload["data"]:
            continue
        without = copy.deepcopy(payload)
        del without["data"][field]
        required = field in schema["required"]
        assert bool(payload_errors(message, without)) == required, f"{name}: schema, without {field}"
        assert (not _as_is(_decode(message, without))) == required, f"{name}: decoder, without {field}"
        if not required:
            continue
        wrong = copy.deepcopy(payload)
        wrong["data"][field] = _wrong_type(field_schema)
        assert payload_errors(message, wrong), f"{name}: schema, {field} of the wrong type"
        assert not _as_is(_decode(message, wrong)), f"{name}: decoder, {field} of the wrong type"


def _bounded_fields(schema: dict[str, Any], value: Any, path: tuple[str | int, ...]) -> list[tuple[Any, ...]]:
    """(path, schema) of every length- or range-bounded field present in `value` (first array item)."""
    schema = resolve(schema["$ref"]) if "$ref" in schema else schema
    if isinstance(value, dict) and "properties" in schema:
        return [
            found
            for name, sub in schema["properties"].items()
            if name in value
            for found in _bounded_fields(sub, value[name], (*path, name))
        ]
    if isinstance(value, list) and value and "items" in schema:
        return _bounded_fields(schema["items"], value[0], (*path, 0))
    if {"maxLength", "minLength", "maximum", "minimum"} & set(schema):
        return [(path, schema)]
    return []


def _edges(schema: dict[str, Any]) -> list[object]:
    """Values just inside and just outside the schema's bounds."""
    if "maxLength" in schema or "minLength" in schema:
        lengths = [schema.get("minLength", 0), schema.get("minLength", 0) - 1]
        lengths += [schema["maxLength"], schema["maxLength"] + 1] if "maxLength" in schema else []
        return ["x" * n for n in lengths if n >= 0]
    edges = []
    if "minimum" in schema:
        edges += [schema["minimum"], schema["minimum"] - 1]
    if "maximum" in schema:
        edges += [schema["maximum"], schema["maximum"] + 1]
    return edges


@pytest.mark.parametrize(
    ("message", "name", "payload"), _consumed_examples(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_schema_and_decoder_agree_on_bounds(message: str, name: str, payload: dict[str, Any]) -> None:
    fields = _bounded_fields(data_schema(message), payload["data"], ())
    assert fields, f"{name}: no bounded field to check"
    for path, schema in fields:
        for edge in _edges(schema):
            changed = copy.deepcopy(payload)
            node = changed["data"]
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = edge
            schema_ok = not payload_errors(message, changed)
            decoder_ok = _as_is(_decode(message, changed))
            assert schema_ok == decoder_ok, f"{name}: {'.'.join(map(str, path))} = {edge!r:.40}"


# --- produced: the core's outputs through the worker's encoders ---------------------------------


def _world() -> World:
    sites, agents = SiteDirectory(), AgentDirectory()
    for value in _traffic_events():
        event = json.loads(value)
        key = (
            event["data"].get("site_id" if event["type"] == inbound.SITE_UPDATED else "agent_id", "").encode()
        )
        if event["type"] == inbound.SITE_UPDATED:
            site = decode_site(key, value, LIMITS)
            assert isinstance(site, Decoded) and isinstance(site.value, SiteSnapshot)
            sites.upsert(site.value)
        elif event["type"] == inbound.AGENT_UPDATED:
            agent = decode_agent(key, value, LIMITS)
            assert isinstance(agent, AgentSnapshot)
            agents.upsert(agent)
    return World(sites, agents, Policy())


@pytest.mark.parametrize("site_id", ["site-1", "site-2"])
def test_missed_and_chatbot_outputs_match_the_document(site_id: str) -> None:
    world = _world()
    value = traffic.handoff_requested("chat-9", site_id, T0, visitor={"name": "Ada"}, event_id="req-9")
    decoded = decode_chat_event(b"chat-9", value, T0, LIMITS)
    assert isinstance(decoded, Decoded)
    request = decoded.value
    assert isinstance(request, HandoffRequested)
    (state,) = [e.state for e in on_chat_event(None, request, T0, world) if isinstance(e, PutState)]
    assert isinstance(state, PendingRound)
    effects = on_timer(state, state.deadline_ms + 7, world)
    (missed,) = [e for e in effects if isinstance(e, EmitMissed)]
    (chatbot,) = [e for e in effects if isinstance(e, EmitChatbotMessage)]
    for message, encoded in (
        ("ChatMissed", outbound.encode_missed(missed, "urn:livechat-notifier")),
        ("ChatbotSendMessage", outbound.encode_chatbot_message(chatbot, "urn:livechat-notifier")),
    ):
        event = json.loads(encoded)
        assert payload_errors(message, event) == []
        assert event["data"]["chat_id"] == "chat-9"


@pytest.mark.parametrize("provider", list(Provider))
def test_token_rejected_output_matches_the_document(provider: Provider) -> None:
    rejection = TokenRejection("agent-1", "d1", provider, "Unregistered", "5c0f3b7a")
    (effect,) = on_token_rejected(rejection, T0 + 123)
    assert isinstance(effect, EmitTokenRejected)
    event = json.loads(outbound.encode_token_rejected(effect, "urn:livechat-notifier"))
    assert payload_errors("TokenRejected", event) == []


@pytest.mark.parametrize(
    "devices", [[], [(Provider.APNS, "delivered", None), (Provider.FCM, "failed", "UNAVAILABLE")]]
)
def test_test_result_output_matches_the_document(devices: list[tuple[Provider, str, str | None]]) -> None:
    request = commands.TestPushRequested("6f1c2a9e", "agent-42", None)
    results = [
        commands.DeviceTestResult(f"d{n}", provider, commands.TestOutcome(outcome), reason)
        for n, (provider, outcome, reason) in enumerate(devices)
    ]
    event = json.loads(commands.encode_test_result(request, results, "urn:livechat-notifier", T0))
    assert payload_errors("TestPushResult", event) == []
    assert [d.get("reason") for d in event["data"]["devices"]] == [reason for _, _, reason in devices]


def test_produced_schemas_refuse_undocumented_fields() -> None:
    """Outputs are described exactly: an extra field in the envelope or in data fails."""
    (example,) = messages()["ChatMissed"]["examples"]
    extra_data = copy.deepcopy(example["payload"])
    extra_data["data"]["visitor_email"] = "ada@example.com"
    extra_envelope = copy.deepcopy(example["payload"])
    extra_envelope["subject"] = "chat-91b0"
    assert payload_errors("ChatMissed", extra_data)
    assert payload_errors("ChatMissed", extra_envelope)
