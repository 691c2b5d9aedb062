"""Encode the worker's output events as CloudEvents 1.0 structured-mode JSON.

Each envelope's `id` is deterministic for what it reports (derived from the request's id), so a
consumer that sees the same report twice — which transactions prevent, but a consumer reading
uncommitted data could — can drop the copy.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from service.domain.effects import EmitChatbotMessage, EmitMissed, EmitTokenRejected, NotifiedAgent

CHAT_MISSED = "livechat.chat.missed"
CHATBOT_SEND_MESSAGE = "livechat.chatbot.send_message"
TOKEN_REJECTED = "livechat.push.token_rejected"  # noqa: S105 -- an event type, not a credential
NO_AGENT_ACCEPTED = "no_agent_accepted"

_ENCODER = msgspec.json.Encoder()


def rfc3339(epoch_ms: int) -> str:
    """Format epoch milliseconds as RFC 3339 UTC with millisecond precision."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def _envelope(event_id: str, event_type: str, source: str, time_ms: int, data: dict[str, object]) -> bytes:
    return _ENCODER.encode(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": source,
            "type": event_type,
            "time": rfc3339(time_ms),
            "datacontenttype": "application/json",
            "data": data,
        }
    )


cloud_event = _envelope
"""The CloudEvents 1.0 envelope of an output event, for the other encoders (commands.py)."""


def encode_missed(effect: EmitMissed, source: str) -> bytes:
    return _envelope(
        effect.event_id,
        CHAT_MISSED,
        source,
        effect.missed_at_ms,
        {
            "chat_id": effect.chat_id,
            "site_id": effect.site_id,
            "requested_at": rfc3339(effect.requested_at_ms),
            "deadline_at": rfc3339(effect.deadline_ms),
            "missed_at": rfc3339(effect.missed_at_ms),
            "agents_notified": effect.agents_notified,
            "devices_notified": effect.devices_notified,
            "late": effect.late,
            "expired_on_arrival": effect.expired_on_arrival,
            "notified": [_notified_agent(agent) for agent in effect.notified],
        },
    )


def _notified_agent(agent: NotifiedAgent) -> dict[str, object]:
    """`reason` only where there is one: left out, not null, like the chatbot's contact."""
    devices: list[dict[str, str]] = []
    for device in agent.devices:
        entry = {"device_id": device.device_id, "outcome": device.outcome.value}
        if device.reason is not None:
            entry["reason"] = device.reason
        devices.append(entry)
    return {"agent_id": agent.agent_id, "devices": devices}


def encode_chatbot_message(effect: EmitChatbotMessage, source: str) -> bytes:
    return _envelope(
        effect.event_id,
        CHATBOT_SEND_MESSAGE,
        source,
        effect.sent_at_ms,
        {
            "chat_id": effect.chat_id,
            "site_id": effect.site_id,
            "reason": NO_AGENT_ACCEPTED,
            "text": effect.text,
            "contact": _contact(effect),
        },
    )


def _contact(effect: EmitChatbotMessage) -> dict[str, str]:
    """Only the contact details the site has: a missing one is left out, not written as null, so
    a consumer reading the optional field as a string never meets a null (`{}` when none)."""
    contact = {"email": effect.contact_email, "phone": effect.contact_phone}
    return {name: value for name, value in contact.items() if value is not None}


def encode_token_rejected(effect: EmitTokenRejected, source: str) -> bytes:
    return _envelope(
        effect.event_id,
        TOKEN_REJECTED,
        source,
        effect.rejected_at_ms,
        {
            "agent_id": effect.agent_id,
            "device_id": effect.device_id,
            "provider": effect.provider.value,
            "reason": effect.reason,
            "rejected_at": rfc3339(effect.rejected_at_ms),
        },
    )
