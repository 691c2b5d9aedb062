"""Issue #12 on the real broker, the rounds' side of support: one reminder per device for a site
that asks for it (none once the chat is taken), Missed saying per device what came of the request,
and the request-to-accept and unreachable metrics on /metrics."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import ClientSession

from devtools import traffic
from devtools.fakes.apns import ReceivedNotification
from devtools.fakes.fcm import FcmFault, ReceivedMessage
from tests.integration.stack import Stack

pytestmark = [pytest.mark.kafka]

APNS_TOKEN = "d5" * 32
ANDROID = traffic.device("android", "fcm", "fcm-token-rs")
IPHONE = traffic.device("iphone", "apns", APNS_TOKEN)
REMINDER = "handoff_reminder"


async def site(stack: Stack, site_id: str = "site-1", **fields: Any) -> None:
    """The site's snapshot with fields `traffic.site_updated` does not take (reminder_after_seconds)."""
    event = json.loads(traffic.site_updated(site_id, "acct-1", "Alpine Tours", time_to_accept_seconds=4))
    event["data"].update(fields)
    await stack.publisher.send(stack.settings.topic_sites, site_id, json.dumps(event).encode())


async def phones(stack: Stack) -> None:
    await stack.agent("agent-1", sites={"site-1": True}, devices=[ANDROID, IPHONE])


def of_chat(chat_id: str, pushes: list[ReceivedMessage] | list[ReceivedNotification]) -> list[Any]:
    return [p for p in pushes if _data(p).get("chat_id") == chat_id]


def _data(push: ReceivedMessage | ReceivedNotification) -> dict[str, Any]:
    if isinstance(push, ReceivedMessage):
        data = push.message.get("data")
        return data if isinstance(data, dict) else {}
    return push.payload


async def test_one_reminder_per_device_while_pending_and_none_once_the_chat_is_taken(stack: Stack) -> None:
    await site(stack, reminder_after_seconds=1)
    await phones(stack)
    await stack.start_worker()

    request_id = await stack.request("chat-1", visitor={"name": "Ada"})
    await stack.request("chat-2")
    await stack.join("chat-2")  # taken before its reminder is due

    await stack.fakes.fcm.messages.wait_for(
        lambda _: bool(of_chat("chat-1", stack.fcm_to("fcm-token-rs", REMINDER))), 20
    )
    await stack.fakes.apns.notifications.wait_for(
        lambda _: bool(of_chat("chat-1", stack.apns_to(stack.fakes.apns, APNS_TOKEN, REMINDER))), 20
    )
    await stack.wait_missed("chat-1")
    await stack.settle()  # anything more the worker would send for either chat has been sent

    [android] = of_chat("chat-1", stack.fcm_to("fcm-token-rs", REMINDER))
    [iphone] = of_chat("chat-1", stack.apns_to(stack.fakes.apns, APNS_TOKEN, REMINDER))
    assert of_chat("chat-2", stack.fcm_to("fcm-token-rs", REMINDER)) == []
    assert of_chat("chat-2", stack.apns_to(stack.fakes.apns, APNS_TOKEN, REMINDER)) == []
    assert android.message["data"] == {
        "type": REMINDER,
        "chat_id": "chat-1",
        "site_id": "site-1",
        "request_id": request_id,
        "open_tab": "active",
        "minutes_left": "1",
    }
    assert android.message["android"]["notification"]["tag"] == "chat-1"
    assert iphone.collapse_id == "chat-1"
    assert "Accept within 1 min" in android.message["notification"]["body"]
    assert "Ada" not in json.dumps(android.message) + json.dumps(iphone.payload)
    # The alert, then the reminder, then the Missed's closing update: one of each per phone.
    kinds = [_data(m)["type"] for m in of_chat("chat-1", stack.fcm_to("fcm-token-rs"))]
    assert kinds == ["handoff_requested", REMINDER, "handoff_closed"]


async def test_a_restored_round_still_reminds_once_and_a_restart_after_the_reminder_never_twice(
    stack: Stack,
) -> None:
    await site(stack, time_to_accept_seconds=30, reminder_after_seconds=8)
    await phones(stack)
    await stack.start_worker()
    await stack.request("chat-1")
    await stack.fakes.fcm.messages.wait_for(lambda items: len(items) >= 1, 20)
    assert await stack.stop_worker() == 0  # before the reminder is due: the new owner must send it
    assert of_chat("chat-1", stack.fcm_to("fcm-token-rs", REMINDER)) == [], "stopped too late to test"

    await stack.start_worker()
    await stack.fakes.fcm.messages.wait_for(
        lambda _: bool(of_chat("chat-1", stack.fcm_to("fcm-token-rs", REMINDER))), 20
    )
    assert await stack.stop_worker() == 0  # after the reminder committed: nobody may send it again
    await stack.start_worker()
    await stack.settle()  # a restored reminder would be due at once, so sent before this

    assert len(of_chat("chat-1", stack.fcm_to("fcm-token-rs", REMINDER))) == 1
    assert len(of_chat("chat-1", stack.apns_to(stack.fakes.apns, APNS_TOKEN, REMINDER))) == 1
    assert len(of_chat("chat-1", stack.fcm_to("fcm-token-rs", "handoff_requested"))) == 1


async def test_missed_says_which_device_got_the_request_and_whose_token_was_rejected(stack: Stack) -> None:
    await site(stack)
    await phones(stack)
    stack.fakes.fcm.set_fault("fcm-token-rs", FcmFault("UNREGISTERED"))
    await stack.start_worker()

    await stack.request("chat-1", tta=3)
    missed = await stack.wait_missed("chat-1")

    assert missed.value is not None
    data = missed.value["data"]
    assert data["notified"] == [
        {
            "agent_id": "agent-1",
            "devices": [
                {"device_id": "android", "outcome": "token_rejected"},
                {"device_id": "iphone", "outcome": "delivered"},
            ],
        }
    ]
    assert (data["agents_notified"], data["devices_notified"]) == (1, 1)


async def test_request_to_accept_and_unreachable_rounds_move_on_metrics(stack: Stack) -> None:
    await site(stack)
    await site(stack, "site-empty")  # nobody's phone is on for it
    await phones(stack)
    app = await stack.start_worker()
    url = f"http://127.0.0.1:{app.http_port}/metrics"

    await stack.request("chat-1", tta=30)
    await stack.fakes.fcm.messages.wait_for(lambda items: len(items) >= 1, 20)
    await stack.join("chat-1")
    await stack.request("chat-2", "site-empty", tta=30)
    await stack.end("chat-2", "site-empty")
    await stack.settle()

    async with ClientSession() as http, http.get(url) as response:
        text = await response.text()
    assert "notifier_request_to_accept_seconds_count 1.0" in text
    assert "notifier_rounds_unreachable_total 1.0" in text
