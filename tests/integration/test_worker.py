"""Issue #2 end to end: the worker on the real broker, pushing through the official clients to
protocol-level fakes. Each test starts its own worker on its own topics."""

from __future__ import annotations

import pytest

from devtools import traffic
from devtools.fakes.apns import ApnsFault
from devtools.fakes.fcm import FcmFault
from tests.integration.kafka_helpers import eventually
from tests.integration.stack import Stack, now_ms, tokens

pytestmark = [pytest.mark.kafka]

ANDROID = traffic.device("android", "fcm", "fcm-token-1")
APNS_TOKEN = "a1" * 32  # APNs device tokens are 64 hex digits
APNS_SANDBOX_TOKEN = "b2" * 32
IPHONE = traffic.device("iphone", "apns", APNS_TOKEN)
IPHONE_DEV = traffic.device("iphone-dev", "apns", APNS_SANDBOX_TOKEN, apns_environment="sandbox")


async def standard_world(stack: Stack, **site: object) -> None:
    await stack.site("site-1", "acct-1", time_to_accept_seconds=60, **site)
    await stack.agent("agent-1", sites={"site-1": True}, devices=[ANDROID, IPHONE, IPHONE_DEV])


async def test_fan_out_reaches_only_eligible_devices_on_both_providers_and_the_sandbox(stack: Stack) -> None:
    await standard_world(stack)
    await stack.agent(
        "unavailable", available=False, sites={"site-1": True}, devices=[traffic.device("x", "fcm", "t-x")]
    )
    await stack.agent("toggle-off", sites={"site-1": False}, devices=[traffic.device("y", "fcm", "t-y")])
    await stack.agent("other-site", sites={"site-2": True}, devices=[traffic.device("z", "apns", "c3" * 32)])
    await stack.agent(
        "other-account", "acct-2", sites={"site-1": True}, devices=[traffic.device("w", "fcm", "t-w")]
    )
    await stack.agent("no-devices", sites={"site-1": True}, devices=[])
    await stack.start_worker()
    fakes = stack.fakes

    request_id = await stack.request(
        "chat-1", visitor={"name": "Ada", "email": "ada@visitor.example"}, tta=30
    )

    [android] = await fakes.fcm.messages.wait_for(lambda items: len(items) >= 1, 20)
    [iphone] = await fakes.apns.notifications.wait_for(lambda items: len(items) >= 1, 20)
    [iphone_dev] = await fakes.apns_sandbox.notifications.wait_for(lambda items: len(items) >= 1, 20)
    assert (android.token, iphone.token, iphone_dev.token) == ("fcm-token-1", APNS_TOKEN, APNS_SANDBOX_TOKEN)

    message = android.message
    assert message["android"]["collapse_key"] == "chat-1"
    assert message["android"]["priority"] == "high"
    assert message["android"]["notification"]["tag"] == "chat-1"
    assert 25 <= int(message["android"]["ttl"].rstrip("s")) <= 30
    assert "Alpine Tours" in message["notification"]["title"]
    assert "Ada" in message["notification"]["body"]
    assert message["data"] == {
        "type": "handoff_requested",
        "chat_id": "chat-1",
        "site_id": "site-1",
        "request_id": request_id,
        "open_tab": "active",
        # The body names the visitor, so the lock-screen version (without the name) rides along.
        "public_title": "Live chat request · Alpine Tours",
        "public_body": "A visitor is waiting for an agent. Tap to open Active chats.",
    }
    assert message["android"]["notification"]["visibility"] == "PRIVATE"
    assert iphone.collapse_id == "chat-1"
    assert iphone.headers["apns-priority"] == "10"
    assert iphone.headers["apns-push-type"] == "alert"
    assert iphone.expiration is not None and 25 <= iphone.expiration - now_ms() // 1000 <= 30
    assert "ada@visitor.example" not in str(android.message) + str(iphone.payload)

    await stack.end("chat-1")
    await fakes.fcm.messages.wait_for(lambda items: len(items) >= 2, 20)
    await stack.settle()
    everything = (
        fakes.fcm.messages.items + fakes.apns.notifications.items + fakes.apns_sandbox.notifications.items
    )
    assert set(tokens(everything)) == {"fcm-token-1", APNS_TOKEN, APNS_SANDBOX_TOKEN}


async def test_join_cancels_the_round_and_tells_every_notified_phone(stack: Stack) -> None:
    await standard_world(stack)
    await stack.start_worker()
    request_id = await stack.request("chat-1", tta=3)
    await stack.fakes.apns.notifications.wait_for(lambda items: len(items) >= 1, 20)
    await stack.fakes.fcm.messages.wait_for(lambda items: len(items) >= 1, 20)
    await stack.fakes.apns_sandbox.notifications.wait_for(lambda items: len(items) >= 1, 20)

    await stack.join("chat-1")

    [_, closed] = await stack.fakes.fcm.messages.wait_for(lambda items: len(items) >= 2, 20)
    assert closed.message["data"] == {
        "type": "handoff_closed",
        "chat_id": "chat-1",
        "site_id": "site-1",
        "request_id": request_id,
        "outcome": "accepted",
        "agent_id": "agent-1",  # who took it (no display name in this agents snapshot)
    }
    # It replaces the alert (same tag) in the quiet channel: it must not buzz the phone again.
    assert closed.message["android"]["notification"]["tag"] == "chat-1"
    assert closed.message["android"]["notification"]["channel_id"] == "live_chat_updates"
    [_, apns_closed] = await stack.fakes.apns.notifications.wait_for(lambda items: len(items) >= 2, 20)
    assert apns_closed.headers["apns-push-type"] == "alert"
    assert apns_closed.headers["apns-priority"] == "5"
    assert apns_closed.collapse_id == "chat-1"
    assert apns_closed.payload["aps"]["interruption-level"] == "passive"
    assert "sound" not in apns_closed.payload["aps"]
    assert apns_closed.payload["aps"]["content-available"] == 1
    assert apns_closed.payload["outcome"] == "accepted"
    await stack.fakes.apns_sandbox.notifications.wait_for(lambda items: len(items) >= 2, 20)

    await stack.settle(tta=4)
    assert stack.missed("chat-1") == []
    assert stack.chatbot("chat-1") == []


async def test_end_cancels_the_round(stack: Stack) -> None:
    await standard_world(stack)
    await stack.start_worker()
    await stack.request("chat-1", tta=3)
    await stack.fakes.fcm.messages.wait_for(lambda items: len(items) >= 1, 20)
    await stack.end("chat-1")
    [_, closed] = await stack.fakes.fcm.messages.wait_for(lambda items: len(items) >= 2, 20)
    assert closed.message["data"]["outcome"] == "ended"
    await stack.settle(tta=4)
    assert stack.missed("chat-1") == []


async def test_deadline_yields_exactly_one_missed_and_one_chatbot_message_with_contact(stack: Stack) -> None:
    await standard_world(
        stack,
        email="bookings@alpine.example",
        phone="+41 44 555 01 01",
        missed_message="{site_name} is busy. Mail {contact_email} or call {contact_phone}.",
    )
    await stack.start_worker()
    request_id = await stack.request("chat-1", tta=2)
    await stack.fakes.fcm.messages.wait_for(lambda items: len(items) >= 1, 20)

    missed = await stack.wait_missed("chat-1")
    [chatbot] = stack.chatbot("chat-1")
    assert missed.value is not None
    assert chatbot.value is not None
    assert missed.value["type"] == "livechat.chat.missed"
    assert missed.value["id"] == f"{request_id}:missed"
    data = missed.value["data"]
    assert data["chat_id"] == "chat-1"
    assert data["site_id"] == "site-1"
    assert data["agents_notified"] == 1
    assert data["devices_notified"] == 3
    assert data["missed_at"] >= data["deadline_at"]
    assert chatbot.value["type"] == "livechat.chatbot.send_message"
    assert chatbot.value["data"] == {
        "chat_id": "chat-1",
        "site_id": "site-1",
        "reason": "no_agent_accepted",
        "text": "Alpine Tours is busy. Mail bookings@alpine.example or call +41 44 555 01 01.",
        "contact": {"email": "bookings@alpine.example", "phone": "+41 44 555 01 01"},
    }
    [_, closed] = await stack.fakes.fcm.messages.wait_for(lambda items: len(items) >= 2, 20)
    assert closed.message["data"]["outcome"] == "missed"

    await stack.settle()
    assert len(stack.missed("chat-1")) == 1
    assert len(stack.chatbot("chat-1")) == 1


async def test_duplicates_and_second_requests_change_nothing(stack: Stack) -> None:
    await standard_world(stack)
    await stack.start_worker()
    request_id = await stack.request("chat-1", tta=2)
    await stack.request("chat-1", tta=2, event_id=request_id)
    await stack.request("chat-1", tta=50)
    await stack.wait_missed("chat-1")
    await stack.request("chat-1", tta=2, event_id=request_id)  # redelivered after the round closed
    await stack.settle(tta=3)
    assert len(stack.missed("chat-1")) == 1
    assert len(stack.chatbot("chat-1")) == 1
    alerts = stack.fcm_to("fcm-token-1", "handoff_requested")
    assert len([a for a in alerts if a.message["data"]["chat_id"] == "chat-1"]) == 1


async def test_request_after_close_starts_a_new_round_and_join_after_missed_does_nothing(
    stack: Stack,
) -> None:
    await standard_world(stack)
    await stack.start_worker()
    await stack.request("chat-1", tta=30)
    await stack.join("chat-1")
    second = await stack.request("chat-1", tta=2)
    missed = await stack.wait_missed("chat-1")
    assert missed.value is not None
    assert missed.value["id"] == f"{second}:missed"
    # The closing updates of both rounds (accepted, missed) go out after their commits.
    await stack.fakes.fcm.messages.wait_for(
        lambda _: len(stack.fcm_to("fcm-token-1", "handoff_closed")) == 2, 20
    )

    await stack.join("chat-1")  # agents may join missed chats: nothing more happens
    await stack.settle()
    assert len(stack.missed("chat-1")) == 1
    assert len(stack.fcm_to("fcm-token-1", "handoff_requested")) >= 2
    chat_alerts = [
        m
        for m in stack.fcm_to("fcm-token-1", "handoff_requested")
        if m.message["data"]["chat_id"] == "chat-1"
    ]
    assert len(chat_alerts) == 2
    closing_after = [
        m for m in stack.fcm_to("fcm-token-1", "handoff_closed") if m.message["data"]["chat_id"] == "chat-1"
    ]
    assert [m.message["data"]["outcome"] for m in closing_after] == ["accepted", "missed"]


async def test_dead_tokens_are_reported_once_and_not_pushed_again(stack: Stack) -> None:
    await standard_world(stack)
    stack.fakes.fcm.set_fault("fcm-token-1", FcmFault("UNREGISTERED"))
    stack.fakes.apns.set_fault(APNS_TOKEN, ApnsFault(410, "Unregistered"))
    await stack.start_worker()

    await stack.request("chat-1", tta=30)
    await stack.outputs.wait_for(lambda: len(stack.feedback()) >= 2, 20, "two token_rejected events")
    rejected = {
        (o.value["data"]["device_id"], o.value["data"]["provider"], o.value["data"]["reason"])
        for o in stack.feedback()
        if o.value
    }
    assert rejected == {("android", "fcm", "UNREGISTERED"), ("iphone", "apns", "Unregistered")}
    assert all(o.key == "agent-1" for o in stack.feedback())
    assert all("token" not in o.value["data"] for o in stack.feedback() if o.value)

    await stack.request("chat-2", tta=30)
    await stack.fakes.apns_sandbox.notifications.wait_for(lambda items: len(items) >= 2, 20)
    await stack.end("chat-1")
    await stack.end("chat-2")
    await stack.settle()
    assert len(stack.fakes.fcm.attempts.items) == 1, "the dead FCM token was tried again"
    assert stack.apns_to(stack.fakes.apns, APNS_TOKEN) == []
    assert len(stack.feedback()) == 2

    # A new snapshot listing the device again makes it usable again.
    stack.fakes.fcm.clear_faults()
    await stack.agent("agent-1", sites={"site-1": True}, devices=[ANDROID])
    assert stack.app is not None
    await _wait_agent_devices(stack, 1)
    await stack.request("chat-3", tta=30)
    await stack.fakes.fcm.messages.wait_for(
        lambda items: any(m.message["data"]["chat_id"] == "chat-3" for m in items), 20
    )


async def _wait_agent_devices(stack: Stack, count: int) -> None:
    def applied() -> bool:
        assert stack.app is not None
        agent = stack.app.world.agents.get("agent-1")
        return agent is not None and len(agent.devices) == count

    await eventually(applied, 20, "agent snapshot applied")


async def test_directory_updates_take_effect_while_running(stack: Stack) -> None:
    await standard_world(stack)
    await stack.start_worker()
    await stack.agent("agent-1", available=False, sites={"site-1": True}, devices=[ANDROID])

    def unavailable() -> bool:
        assert stack.app is not None
        agent = stack.app.world.agents.get("agent-1")
        return agent is not None and not agent.live_chat_available

    await eventually(unavailable, 20, "availability switched off")
    await stack.request("chat-1", tta=2)
    missed = await stack.wait_missed("chat-1")
    assert missed.value is not None
    assert missed.value["data"]["devices_notified"] == 0
    assert stack.fakes.fcm.messages.items == []

    await stack.delete(stack.settings.topic_sites, "site-1")

    def site_gone() -> bool:
        assert stack.app is not None
        return stack.app.world.sites.get("site-1") is None

    await eventually(site_gone, 20, "site tombstone applied")
    await stack.request("chat-2", tta=2)
    await stack.wait_missed("chat-2")  # a deleted site is unknown: nobody pushed, the visitor answered
    assert stack.fakes.fcm.messages.items == []
    assert stack.dead_letters() == []


async def test_restart_mid_round_still_ends_in_exactly_one_missed(make_stack: object) -> None:
    stack = await make_stack(partitions=2)  # type: ignore[operator]
    await standard_world(stack)
    await stack.start_worker()
    await stack.request("chat-1", tta=6)
    await stack.request("chat-2", tta=6)
    await stack.fakes.fcm.messages.wait_for(lambda items: len(items) >= 2, 20)
    assert await stack.stop_worker() == 0

    await stack.start_worker()
    await stack.wait_missed("chat-1")
    await stack.wait_missed("chat-2")
    await stack.request("sentinel", tta=2)
    await stack.wait_missed("sentinel")
    assert len(stack.missed("chat-1")) == 1
    assert len(stack.chatbot("chat-1")) == 1
    assert len(stack.missed("chat-2")) == 1
    for chat_id in ("chat-1", "chat-2"):
        alerts = [
            m
            for m in stack.fcm_to("fcm-token-1", "handoff_requested")
            if m.message["data"]["chat_id"] == chat_id
        ]
        assert len(alerts) == 1, "a finished fan-out must not be pushed again after a restart"


async def test_bad_records_are_dead_lettered_and_the_worker_carries_on(stack: Stack) -> None:
    await standard_world(stack)
    await stack.start_worker()
    await stack.raw("chat-x", b"\xff not utf-8")
    await stack.raw("chat-y", b'{"specversion": "1.0"}')
    await stack.raw("chat-z", None)
    await stack.request("chat-1", tta=2)
    await stack.wait_missed("chat-1")
    await stack.outputs.wait_for(lambda: len(stack.dead_letters()) >= 3, 20, "three dead letters")
    reasons = {(d.key, d.headers["reason"]) for d in stack.dead_letters()}
    assert reasons == {("chat-x", b"not_utf8"), ("chat-y", b"bad_envelope"), ("chat-z", b"null_value")}
    original = next(d for d in stack.dead_letters() if d.key == "chat-x")
    assert original.value == {"_raw": b"\xff not utf-8"}
    assert original.headers["source_topic"] == stack.settings.topic_chat_events.encode()
