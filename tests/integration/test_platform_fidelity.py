"""Issue #12, platform fidelity, end to end: what an iPhone and an Android phone are sent for a
request and for its closing update, with the default settings and with the other choices, on the
real broker through the official clients to the protocol fakes (which refuse what Apple and
Google refuse: push type against payload, interruption level, channel, notification priority,
visibility, loc keys and args). Then the texts: loc keys next to the rendered text, the Android
lock-screen version, the reminder, and who took the chat."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devtools import traffic
from tests.integration.conftest import MakeStack
from tests.integration.stack import Stack

pytestmark = [pytest.mark.kafka]

APNS_TOKEN = "c4" * 32
ANDROID = traffic.device("android", "fcm", "fcm-token-pf")
IPHONE = traffic.device("iphone", "apns", APNS_TOKEN)


async def _request_then_join(stack: Stack) -> str:
    await stack.site("site-7", "acct-1", time_to_accept_seconds=60)
    await stack.agent("agent-1", sites={"site-7": True}, devices=[ANDROID, IPHONE])
    await stack.start_worker()
    request_id = await stack.request("chat-9", site_id="site-7", tta=30)
    await stack.fakes.apns.notifications.wait_for(lambda items: len(items) >= 1, 20)
    await stack.fakes.fcm.messages.wait_for(lambda items: len(items) >= 1, 20)
    await stack.join("chat-9", site_id="site-7")
    await stack.fakes.apns.notifications.wait_for(lambda items: len(items) >= 2, 20)
    await stack.fakes.fcm.messages.wait_for(lambda items: len(items) >= 2, 20)
    return request_id


async def test_iphone_gets_a_time_sensitive_alert_then_a_passive_one_stating_the_outcome(
    stack: Stack,
) -> None:
    request_id = await _request_then_join(stack)

    alert, closed = stack.fakes.apns.notifications.items
    assert alert.headers["apns-push-type"] == "alert"
    assert alert.payload["aps"]["interruption-level"] == "time-sensitive"
    assert alert.payload["aps"]["thread-id"] == "site-7"
    assert alert.payload["aps"]["sound"] == "default"

    assert closed.collapse_id == alert.collapse_id == "chat-9"
    assert closed.headers["apns-push-type"] == "alert"
    assert closed.headers["apns-priority"] == "5"
    aps = closed.payload["aps"]
    assert aps["alert"]["body"] == "Taken by an agent"
    assert {key: aps[key] for key in aps if key != "alert"} == {
        "interruption-level": "passive",
        "content-available": 1,
        "thread-id": "site-7",
    }
    assert (closed.payload["outcome"], closed.payload["request_id"]) == ("accepted", request_id)


async def test_android_gets_a_max_priority_alert_then_a_replacing_notification_in_the_updates_channel(
    stack: Stack,
) -> None:
    request_id = await _request_then_join(stack)

    alert, closed = stack.fakes.fcm.messages.items
    assert alert.message["android"]["priority"] == "high"
    assert (
        alert.message["android"]["notification"].items()
        >= {
            "tag": "chat-9",
            "channel_id": "live_chat_requests",
            "notification_priority": "PRIORITY_MAX",
        }.items()
    )
    assert (
        closed.message["android"]["notification"].items()
        >= {
            "tag": "chat-9",
            "channel_id": "live_chat_updates",
            "notification_priority": "PRIORITY_LOW",
        }.items()
    )
    assert closed.message["notification"]["body"] == "Taken by an agent"
    assert (closed.message["data"]["outcome"], closed.message["data"]["request_id"]) == (
        "accepted",
        request_id,
    )


async def test_the_other_choices_reach_the_phones_when_configured(make_stack: MakeStack) -> None:
    stack = await make_stack(
        apns_interruption_level="active",
        apns_sound="",
        apns_closing_update="background",
        fcm_channel_id="requests-v2",
        fcm_closing_update="data",
    )
    await _request_then_join(stack)

    alert, closed = stack.fakes.apns.notifications.items
    assert alert.payload["aps"]["interruption-level"] == "active"
    assert "sound" not in alert.payload["aps"]
    assert closed.headers["apns-push-type"] == "background"
    assert closed.payload["aps"] == {"content-available": 1}

    android_alert, android_closed = stack.fakes.fcm.messages.items
    assert android_alert.message["android"]["notification"]["channel_id"] == "requests-v2"
    assert "notification" not in android_closed.message
    assert android_closed.message["data"]["outcome"] == "accepted"


def _with(event: bytes, **fields: Any) -> bytes:
    """`event` (a CloudEvent from devtools.traffic) with `fields` added to its data."""
    decoded = json.loads(event)
    decoded["data"].update(fields)
    return json.dumps(decoded).encode()


async def _site(stack: Stack, **fields: Any) -> None:
    event = traffic.site_updated("site-7", "acct-1", "Alpine Tours", time_to_accept_seconds=60)
    await stack.publisher.send(stack.settings.topic_sites, "site-7", _with(event, **fields))


async def _agent(stack: Stack, **fields: Any) -> None:
    event = traffic.agent_updated("agent-1", "acct-1", sites={"site-7": True}, devices=[ANDROID, IPHONE])
    await stack.publisher.send(stack.settings.topic_agents, "agent-1", _with(event, **fields))


async def test_an_alert_naming_the_visitor_carries_loc_keys_and_a_lock_screen_version_without_the_name(
    stack: Stack,
) -> None:
    await _site(stack)
    await _agent(stack)
    await stack.start_worker()
    await stack.request("chat-9", site_id="site-7", tta=30, visitor={"name": "Ada"})
    [iphone] = await stack.fakes.apns.notifications.wait_for(lambda items: len(items) >= 1, 20)
    [android] = await stack.fakes.fcm.messages.wait_for(lambda items: len(items) >= 1, 20)

    alert = iphone.payload["aps"]["alert"]
    assert "Ada" in alert["body"]
    assert isinstance(alert["title-loc-key"], str) and alert["title-loc-args"] == ["Alpine Tours"]
    assert isinstance(alert["loc-key"], str) and alert["loc-args"] == ["Ada"]
    assert "public_body" not in iphone.payload, "nothing in an APNs payload can make iOS use it"

    shown = android.message["android"]["notification"]
    assert shown["visibility"] == "PRIVATE"
    assert isinstance(shown["title_loc_key"], str) and shown["title_loc_args"] == ["Alpine Tours"]
    assert isinstance(shown["body_loc_key"], str) and shown["body_loc_args"] == ["Ada"]
    assert "Ada" in android.message["notification"]["body"]
    public = android.message["data"]["public_title"] + android.message["data"]["public_body"]
    assert public and "Ada" not in public


async def test_a_reminder_looks_like_the_alert_under_its_collapse_id(stack: Stack) -> None:
    await _site(stack, reminder_after_seconds=1)
    await _agent(stack)
    await stack.start_worker()
    await stack.request("chat-9", site_id="site-7", tta=30)
    alert, reminder = await stack.fakes.apns.notifications.wait_for(lambda items: len(items) >= 2, 20)
    android_alert, android_reminder = await stack.fakes.fcm.messages.wait_for(
        lambda items: len(items) >= 2, 20
    )

    for header in ("apns-push-type", "apns-priority", "apns-collapse-id"):
        assert reminder.headers[header] == alert.headers[header], header
    assert reminder.payload["aps"]["interruption-level"] == "time-sensitive"
    assert reminder.payload["aps"]["sound"] == "default"
    assert reminder.payload["aps"]["thread-id"] == "site-7"
    assert reminder.payload["aps"]["alert"]["body"]
    assert (
        android_reminder.message["android"]["collapse_key"]
        == android_alert.message["android"]["collapse_key"]
    )
    assert android_reminder.message["android"]["priority"] == "high"
    assert (
        android_reminder.message["android"]["notification"].items()
        >= {
            "tag": "chat-9",
            "channel_id": "live_chat_requests",
            "notification_priority": "PRIORITY_MAX",
        }.items()
    )
    assert android_reminder.message["notification"]["body"]


async def test_the_closing_update_says_who_took_the_chat(stack: Stack) -> None:
    await _site(stack)
    await _agent(stack, display_name="Anna")
    await stack.start_worker()
    await stack.request("chat-9", site_id="site-7", tta=30)
    await stack.fakes.apns.notifications.wait_for(lambda items: len(items) >= 1, 20)
    await stack.fakes.fcm.messages.wait_for(lambda items: len(items) >= 1, 20)
    await stack.join("chat-9", site_id="site-7")
    _, closed = await stack.fakes.apns.notifications.wait_for(lambda items: len(items) >= 2, 20)
    _, android_closed = await stack.fakes.fcm.messages.wait_for(lambda items: len(items) >= 2, 20)

    alert = closed.payload["aps"]["alert"]
    assert alert["body"] == "Taken by Anna"
    assert isinstance(alert["loc-key"], str) and alert["loc-args"] == ["Anna"]
    assert (closed.payload["agent_id"], closed.payload["agent_name"]) == ("agent-1", "Anna")
    assert closed.payload["aps"]["interruption-level"] == "passive"
    assert android_closed.message["notification"]["body"] == "Taken by Anna"
    assert android_closed.message["android"]["notification"]["body_loc_args"] == ["Anna"]
    assert android_closed.message["data"]["agent_name"] == "Anna"
