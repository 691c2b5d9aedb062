"""Issue #12, platform fidelity, end to end: what an iPhone and an Android phone are sent for a
request and for its closing update, with the default settings and with the other choices, on the
real broker through the official clients to the protocol fakes (which refuse what Apple and
Google refuse: push type against payload, interruption level, channel, notification priority)."""

from __future__ import annotations

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
    assert closed.payload["aps"] == {
        "alert": {"body": "Taken by an agent"},
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
    assert alert.message["android"]["notification"] == {
        "tag": "chat-9",
        "channel_id": "live_chat_requests",
        "notification_priority": "PRIORITY_MAX",
    }
    assert closed.message["android"]["notification"] == {
        "tag": "chat-9",
        "channel_id": "live_chat_updates",
        "notification_priority": "PRIORITY_LOW",
    }
    assert closed.message["notification"] == {"body": "Taken by an agent"}
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
