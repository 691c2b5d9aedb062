"""Output events: CloudEvents envelopes with deterministic ids and the contract's data fields."""

from __future__ import annotations

import json

from service.domain.effects import (
    UNCONFIRMED,
    DeviceOutcome,
    EmitChatbotMessage,
    EmitMissed,
    EmitTokenRejected,
    NotifiedAgent,
    NotifiedDevice,
)
from service.domain.push import Provider
from service.wire.outbound import encode_chatbot_message, encode_missed, encode_token_rejected, rfc3339


def test_rfc3339_is_utc_with_milliseconds() -> None:
    assert rfc3339(1_800_000_000_123) == "2027-01-15T08:00:00.123Z"


def test_missed_event() -> None:
    effect = EmitMissed("r1:missed", "c1", "s1", 1_000, 61_000, 61_050, 2, 3)
    event = json.loads(encode_missed(effect, "urn:test"))
    assert event["specversion"] == "1.0"
    assert event["type"] == "livechat.chat.missed"
    assert event["id"] == "r1:missed"
    assert event["data"] == {
        "chat_id": "c1",
        "site_id": "s1",
        "requested_at": "1970-01-01T00:00:01.000Z",
        "deadline_at": "1970-01-01T00:01:01.000Z",
        "missed_at": "1970-01-01T00:01:01.050Z",
        "agents_notified": 2,
        "devices_notified": 3,
        "late": False,
        "expired_on_arrival": False,
        "notified": [],
    }


def test_missed_event_says_per_agent_what_came_of_each_device() -> None:
    notified = (
        NotifiedAgent(
            "agent-1",
            (
                NotifiedDevice("phone", DeviceOutcome.DELIVERED),
                NotifiedDevice("tablet", DeviceOutcome.FAILED, UNCONFIRMED),
            ),
        ),
        NotifiedAgent(
            "agent-2",
            (
                NotifiedDevice("old", DeviceOutcome.TOKEN_REJECTED),
                NotifiedDevice("slow", DeviceOutcome.PENDING),
            ),
        ),
    )
    effect = EmitMissed("r1:missed", "c1", "s1", 1_000, 61_000, 61_050, 1, 1, notified=notified)
    data = json.loads(encode_missed(effect, "urn:test"))["data"]
    assert data["notified"] == [
        {
            "agent_id": "agent-1",
            "devices": [
                {"device_id": "phone", "outcome": "delivered"},
                {"device_id": "tablet", "outcome": "failed", "reason": "unconfirmed"},
            ],
        },
        {
            "agent_id": "agent-2",
            "devices": [
                {"device_id": "old", "outcome": "token_rejected"},
                {"device_id": "slow", "outcome": "pending"},
            ],
        },
    ]


def test_a_late_missed_event_says_so() -> None:
    effect = EmitMissed(
        "r1:missed", "c1", "s1", 1_000, 61_000, 961_000, 0, 0, late=True, expired_on_arrival=True
    )
    data = json.loads(encode_missed(effect, "urn:test"))["data"]
    assert (data["late"], data["expired_on_arrival"]) == (True, True)


def test_chatbot_message() -> None:
    effect = EmitChatbotMessage("r1:chatbot", "c1", "s1", "text", "a@b.c", "+1", 5)
    event = json.loads(encode_chatbot_message(effect, "urn:test"))
    assert event["type"] == "livechat.chatbot.send_message"
    assert event["data"] == {
        "chat_id": "c1",
        "site_id": "s1",
        "reason": "no_agent_accepted",
        "text": "text",
        "contact": {"email": "a@b.c", "phone": "+1"},
    }


def test_token_rejected_carries_no_token() -> None:
    effect = EmitTokenRejected("token_rejected:a:d:f", "a", "d", Provider.APNS, "Unregistered", 0)
    event = json.loads(encode_token_rejected(effect, "urn:test"))
    assert event["type"] == "livechat.push.token_rejected"
    assert set(event["data"]) == {"agent_id", "device_id", "provider", "reason", "rejected_at"}


def test_chatbot_message_leaves_out_missing_contact_details() -> None:
    def contact(email: str | None, phone: str | None) -> object:
        effect = EmitChatbotMessage("r1:chatbot", "c1", "s1", "text", email, phone, 5)
        return json.loads(encode_chatbot_message(effect, "urn:test"))["data"]["contact"]

    assert contact("a@b.c", None) == {"email": "a@b.c"}
    assert contact(None, "+1") == {"phone": "+1"}
    assert contact(None, None) == {}
