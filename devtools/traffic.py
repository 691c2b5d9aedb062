"""CloudEvents for the topics the worker consumes, as other teams' services would write them.

Used by the integration tests, the local demo and (later) the fault-injection generator, so all
three speak exactly the contract in README "Topics and events".
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any


def rfc3339(epoch_ms: int) -> str:
    return (
        datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def cloud_event(event_type: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id or str(uuid.uuid4()),
            "source": "urn:devtools:traffic",
            "type": event_type,
            "time": datetime.now(UTC).isoformat(),
            "data": data,
        }
    ).encode()


def handoff_requested(
    chat_id: str,
    site_id: str,
    requested_at_ms: int,
    *,
    visitor: dict[str, str] | None = None,
    time_to_accept_seconds: int | None = None,
    event_id: str | None = None,
) -> bytes:
    data: dict[str, Any] = {"chat_id": chat_id, "site_id": site_id, "requested_at": rfc3339(requested_at_ms)}
    if visitor is not None:
        data["visitor"] = visitor
    if time_to_accept_seconds is not None:
        data["time_to_accept_seconds"] = time_to_accept_seconds
    return cloud_event("livechat.chat.handoff_requested", data, event_id)


def agent_joined(chat_id: str, site_id: str, agent_id: str, joined_at_ms: int) -> bytes:
    data = {"chat_id": chat_id, "site_id": site_id, "agent_id": agent_id, "joined_at": rfc3339(joined_at_ms)}
    return cloud_event("livechat.chat.agent_joined", data)


def chat_ended(chat_id: str, site_id: str, ended_at_ms: int, reason: str = "visitor_left") -> bytes:
    data = {"chat_id": chat_id, "site_id": site_id, "ended_at": rfc3339(ended_at_ms), "reason": reason}
    return cloud_event("livechat.chat.ended", data)


def device(device_id: str, provider: str, token: str, apns_environment: str | None = None) -> dict[str, str]:
    value = {"device_id": device_id, "provider": provider, "token": token}
    if apns_environment is not None:
        value["apns_environment"] = apns_environment
    return value


def agent_updated(
    agent_id: str,
    account_id: str,
    *,
    available: bool = True,
    sites: dict[str, bool] | None = None,
    devices: list[dict[str, str]] | None = None,
    display_name: str | None = None,
) -> bytes:
    data: dict[str, Any] = {
        "agent_id": agent_id,
        "account_id": account_id,
        "live_chat_available": available,
        "sites": [{"site_id": site_id, "push_enabled": on} for site_id, on in (sites or {}).items()],
        "devices": devices or [],
    }
    if display_name is not None:
        data["display_name"] = display_name
    return cloud_event("livechat.agent.updated", data)


def site_updated(
    site_id: str,
    account_id: str,
    name: str,
    *,
    time_to_accept_seconds: int = 120,
    email: str = "hello@example.com",
    phone: str = "+1 555 0100",
    missed_message: str | None = None,
    reminder_after_seconds: int | None = None,
) -> bytes:
    data: dict[str, Any] = {
        "site_id": site_id,
        "account_id": account_id,
        "name": name,
        "time_to_accept_seconds": time_to_accept_seconds,
        "contact": {"email": email, "phone": phone},
    }
    if missed_message is not None:
        data["missed_message"] = missed_message
    if reminder_after_seconds is not None:
        data["reminder_after_seconds"] = reminder_after_seconds
    return cloud_event("livechat.site.updated", data)


def push_test_requested(agent_id: str, device_id: str | None = None, command_id: str | None = None) -> bytes:
    """A support console's or the app's "send test notification" (key: the agent id)."""
    data = {"agent_id": agent_id} | ({"device_id": device_id} if device_id is not None else {})
    return cloud_event("livechat.push.test_requested", data, command_id)
