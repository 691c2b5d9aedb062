"""Decoding consumed records: valid CloudEvents become domain values, anything else a Rejection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from service.domain.events import AgentJoined, AgentSnapshot, ChatEnded, HandoffRequested, SiteSnapshot
from service.domain.push import ApnsEnvironment, Provider
from service.wire.inbound import DecodeLimits, decode_agent, decode_chat_event, decode_site
from service.wire.rejection import Reason, Rejection
from service.wire.repair import Decoded

LIMITS = DecodeLimits()
AT = "2027-01-15T08:00:00Z"  # the factories' T0


def envelope(event_type: str, data: Any, **overrides: Any) -> bytes:
    value = {"specversion": "1.0", "id": "ev-1", "source": "test", "type": event_type, "data": data}
    value.update(overrides)
    return json.dumps(value).encode()


def handoff(**data: Any) -> bytes:
    body = {"chat_id": "c1", "site_id": "s1", "requested_at": "2027-01-15T08:00:00Z"} | data
    return envelope("livechat.chat.handoff_requested", body)


NOW = 1_800_000_000_000 + 10_000


def clean(result: object) -> object:
    """The decoded value, which must have needed no repair."""
    assert isinstance(result, Decoded), result
    assert result.repairs == ()
    return result.value


def test_handoff_requested_decodes_with_visitor_name_only() -> None:
    visitor = {"name": "Ada", "email": "ada@example.com", "location": "Zurich", "device": "iPhone"}
    event = decode_chat_event(b"c1", handoff(visitor=visitor, time_to_accept_seconds=30), NOW, LIMITS)
    assert event == Decoded(HandoffRequested("ev-1", "c1", "s1", 1_800_000_000_000, "Ada", 30), ())
    assert "ada@example.com" not in repr(event)


def test_join_and_end_decode() -> None:
    joined = envelope(
        "livechat.chat.agent_joined", {"chat_id": "c1", "site_id": "s1", "agent_id": "a1", "joined_at": AT}
    )
    ended = envelope(
        "livechat.chat.ended", {"chat_id": "c1", "site_id": "s1", "ended_at": AT, "reason": "bye"}
    )
    at_ms = 1_800_000_000_000
    assert clean(decode_chat_event(b"c1", joined, NOW, LIMITS)) == AgentJoined(
        "ev-1", "c1", "s1", "a1", at_ms
    )
    assert clean(decode_chat_event(b"c1", ended, NOW, LIMITS)) == ChatEnded("ev-1", "c1", "s1", at_ms, "bye")


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"c1", None, Reason.NULL_VALUE),
        (b"c1", b"\xff\xfe{}", Reason.NOT_UTF8),
        (b"c1", b"{not json", Reason.INVALID_JSON),
        (b"c1", b"[1, 2]", Reason.NOT_AN_OBJECT),
        (b"c1", envelope("livechat.chat.handoff_requested", {}, specversion="0.3"), Reason.BAD_SPECVERSION),
        (b"c1", b'{"specversion": "1.0", "type": "x"}', Reason.BAD_ENVELOPE),
        (b"c1", envelope("livechat.chat.unknown", {}), Reason.UNKNOWN_TYPE),
        (b"c1", envelope("livechat.chat.handoff_requested", {"chat_id": "c1"}), Reason.BAD_DATA),
        (b"c1", handoff(site_id=7), Reason.BAD_DATA),
        (b"other", handoff(), Reason.KEY_MISMATCH),
        (b"c1", handoff(requested_at="yesterday"), Reason.BAD_DATA),
        (b"c1", handoff(requested_at="2027-01-15T08:00:00"), Reason.BAD_DATA),
        (b"c1", handoff(requested_at="2099-01-01T00:00:00Z"), Reason.BAD_TIMESTAMP),
        (b"c1", handoff(requested_at="1990-01-01T00:00:00Z"), Reason.BAD_TIMESTAMP),
        (b"c1", handoff(site_id=None), Reason.BAD_DATA),
        (b"c1", handoff(chat_id=""), Reason.BAD_DATA),
        (b"c1", handoff(requested_at=None, visitor="Ada"), Reason.BAD_DATA),
        (b"c1", b"{" + b" " * 2_000_000 + b"}", Reason.TOO_LARGE),
    ],
)
def test_unusable_chat_event_is_rejected_with_its_reason(
    key: bytes, value: bytes | None, reason: Reason
) -> None:
    result = decode_chat_event(key, value, NOW, LIMITS)
    assert isinstance(result, Rejection)
    assert result.reason is reason, result.detail


def agent_value(**data: Any) -> bytes:
    body = {
        "agent_id": "a1",
        "account_id": "acct",
        "live_chat_available": True,
        "sites": [{"site_id": "s1", "push_enabled": True}],
        "devices": [
            {"device_id": "d1", "provider": "fcm", "token": "t1"},
            {"device_id": "d2", "provider": "apns", "token": "t2", "apns_environment": "sandbox"},
        ],
    } | data
    return envelope("livechat.agent.updated", body)


def test_agent_snapshot_decodes() -> None:
    agent = decode_agent(b"a1", agent_value(), LIMITS)
    assert isinstance(agent, AgentSnapshot)
    assert agent.push_enabled_by_site == {"s1": True}
    assert [(d.provider, d.apns_environment) for d in agent.devices] == [
        (Provider.FCM, ApnsEnvironment.PRODUCTION),
        (Provider.APNS, ApnsEnvironment.SANDBOX),
    ]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (agent_value(devices=[{"device_id": "d1", "provider": "hms", "token": "t"}]), Reason.BAD_DATA),
        (agent_value(devices=[{"device_id": "d1", "provider": "fcm", "token": ""}]), Reason.BAD_DATA),
        (agent_value(devices=[{"device_id": "d1", "provider": "fcm", "token": "x" * 5000}]), Reason.BAD_DATA),
        (
            agent_value(devices=[{"device_id": "d", "provider": "fcm", "token": "a"}] * 2),
            Reason.BAD_DATA,
        ),
        (agent_value(agent_id="a2"), Reason.KEY_MISMATCH),
    ],
)
def test_unusable_agent_snapshot_is_rejected(value: bytes, reason: Reason) -> None:
    result = decode_agent(b"a1", value, LIMITS)
    assert isinstance(result, Rejection)
    assert result.reason is reason


def site_value(**data: Any) -> bytes:
    body = {
        "site_id": "s1",
        "account_id": "acct",
        "name": "Alpine Tours",
        "time_to_accept_seconds": 90,
        "contact": {"email": "hi@alpine.example", "phone": "+41"},
        "missed_message": "Sorry! {contact_email}",
    } | data
    return envelope("livechat.site.updated", body)


def test_site_snapshot_decodes() -> None:
    assert decode_site(b"s1", site_value(), LIMITS) == Decoded(
        SiteSnapshot("s1", "acct", "Alpine Tours", 90, "hi@alpine.example", "+41", "Sorry! {contact_email}"),
        (),
    )


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    "value",
    [
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b'{"specversion": "1.0", "id": "e", "source": "s", "type": "livechat.chat.ended", "data": '
        + nested(100_000)
        + b"}",
        b'{"specversion": "1.0", "unknown": ' + nested(5_000) + b"}",
        handoff(visitor={"name": "Ada"}).replace(b'"name"', b'"extra": ' + nested(2_000) + b', "name"'),
    ],
    ids=["objects", "data", "unknown-envelope-field", "unknown-data-field"],
)
def test_deeply_nested_json_is_a_typed_rejection(value: bytes) -> None:
    # msgspec recurses even to skip a value and raises RecursionError at about 1,000 levels.
    result = decode_chat_event(b"c1", value, NOW, LIMITS)
    assert isinstance(result, Rejection)
    assert result.reason is Reason.TOO_DEEP


def test_nesting_a_valid_schema_never_needs_is_still_decoded_when_shallow() -> None:
    value = handoff().replace(b'"chat_id"', b'"extra": ' + nested(50) + b', "chat_id"')
    assert isinstance(clean(decode_chat_event(b"c1", value, NOW, LIMITS)), HandoffRequested)


def test_rejection_details_do_not_quote_enum_values() -> None:
    token = "tok-" + "x" * 200_000
    value = agent_value(devices=[{"device_id": "d1", "provider": token, "token": "t"}])
    result = decode_agent(b"a1", value, LIMITS)
    assert isinstance(result, Rejection)
    assert result.reason is Reason.BAD_DATA
    assert "tok-" not in result.detail
    assert result.detail == "livechat.agent.updated: Invalid enum value - at `$.devices[0].provider`"


def test_every_rejection_reason_is_documented() -> None:
    errors_md = (Path(__file__).parents[3] / "docs" / "errors.md").read_text()
    missing = [reason.value for reason in Reason if f"| `{reason.value}` |" not in errors_md]
    assert missing == [], "add these reasons to docs/errors.md"
