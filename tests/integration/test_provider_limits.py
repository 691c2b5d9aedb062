"""Issue #10 item 5 end to end: chat ids longer than APNs' 64-byte collapse id and names at the
decoder's limits still reach both providers, through the worker on the real broker, against fakes
that refuse what Apple and FCM refuse (`apns-collapse-id` over 64 bytes, payloads over 4096)."""

from __future__ import annotations

import json
import uuid

import pytest

from devtools import traffic
from devtools.fakes.fcm import payload_size as fcm_payload_size
from service.push.limits import ELLIPSIS, MAX_COLLAPSE_ID_BYTES, MAX_PAYLOAD_BYTES
from tests.integration.stack import Stack

pytestmark = [pytest.mark.kafka]

ANDROID = traffic.device("android", "fcm", "fcm-token-1")
APNS_TOKEN = "a1" * 32
IPHONE = traffic.device("iphone", "apns", APNS_TOKEN)
SITE_NAME = "🏔" * 200  # the decoder's longest site name, 800 bytes
VISITOR_NAME = "😀" * 500 + "張" * 500  # the decoder's longest visitor name, 3,500 bytes


def long_chat_id() -> str:
    """A prefixed chat id of exactly 100 bytes, unique per test."""
    chat_id = f"livechat:tenant-7:chat:{uuid.uuid4()}:{uuid.uuid4()}"  # 95 bytes
    return chat_id.ljust(100, "0")


async def test_a_chat_id_over_64_bytes_alerts_both_phones_and_closes_under_the_same_collapse_id(
    stack: Stack,
) -> None:
    chat_id = long_chat_id()
    assert len(chat_id.encode()) == 100
    await stack.site("site-1", "acct-1", time_to_accept_seconds=60)
    await stack.agent("agent-1", sites={"site-1": True}, devices=[ANDROID, IPHONE])
    await stack.start_worker()
    fakes = stack.fakes

    await stack.request(chat_id, visitor={"name": "Ada"})

    [iphone_alert] = await fakes.apns.notifications.wait_for(lambda items: len(items) >= 1, 20)
    [android_alert] = await fakes.fcm.messages.wait_for(lambda items: len(items) >= 1, 20)
    collapse_id = iphone_alert.collapse_id
    assert collapse_id is not None and len(collapse_id.encode()) <= MAX_COLLAPSE_ID_BYTES
    assert iphone_alert.payload["chat_id"] == chat_id, "the app still gets the whole chat id"
    assert android_alert.message["data"]["chat_id"] == chat_id
    android = android_alert.message["android"]
    assert android["collapse_key"] == android["notification"]["tag"] == collapse_id, "one rule for both"

    await stack.join(chat_id)

    [_, iphone_closed] = await fakes.apns.notifications.wait_for(lambda items: len(items) >= 2, 20)
    [_, android_closed] = await fakes.fcm.messages.wait_for(lambda items: len(items) >= 2, 20)
    assert iphone_closed.payload["type"] == android_closed.message["data"]["type"] == "handoff_closed"
    assert iphone_closed.collapse_id == collapse_id, "the closing update replaces the alert"
    assert android_closed.message["android"]["collapse_key"] == collapse_id


async def test_a_site_and_a_visitor_with_names_at_the_decoders_limits_still_alert_both_phones(
    stack: Stack,
) -> None:
    await stack.site("site-1", "acct-1", name=SITE_NAME, time_to_accept_seconds=60)
    await stack.agent("agent-1", sites={"site-1": True}, devices=[ANDROID, IPHONE])
    await stack.start_worker()
    fakes = stack.fakes

    await stack.request("chat-1", visitor={"name": VISITOR_NAME})

    [iphone] = await fakes.apns.notifications.wait_for(lambda items: len(items) >= 1, 20)
    [android] = await fakes.fcm.messages.wait_for(lambda items: len(items) >= 1, 20)
    assert len(json.dumps(iphone.payload, ensure_ascii=False).encode()) <= MAX_PAYLOAD_BYTES
    assert fcm_payload_size(android.message) <= MAX_PAYLOAD_BYTES
    for title, body in (
        (iphone.payload["aps"]["alert"]["title"], iphone.payload["aps"]["alert"]["body"]),
        (android.message["notification"]["title"], android.message["notification"]["body"]),
    ):
        # Since #12 both names travel more than once (texts, loc args, and on Android the
        # lock-screen title in data), so on FCM the site's name may be cut too: kept, not dropped.
        assert title.startswith("Live chat request · " + "🏔" * 100), "the site's name is kept"
        assert body.startswith("😀" * 100), "the visitor's name is cut, not dropped"
        assert body.endswith(ELLIPSIS)
        assert VISITOR_NAME.startswith(body.removesuffix(ELLIPSIS))
    assert iphone.payload["chat_id"] == android.message["data"]["chat_id"] == "chat-1"
