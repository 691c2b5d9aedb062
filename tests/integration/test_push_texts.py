"""Issue #12, the words of the pushes, end to end on the real broker and the provider fakes: a site's
own alert templates (no localization key for its wording), a site that hides visitors' names (the
name reaches no byte the fakes got and no round in the changelog), and the closing update naming
the colleague who took the chat."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devtools import traffic
from devtools.kafka_io import OutputReader
from tests.integration.stack import Stack

pytestmark = [pytest.mark.kafka]

APNS_TOKEN = "d7" * 32
ANDROID = traffic.device("android", "fcm", "fcm-token-texts")
IPHONE = traffic.device("iphone", "apns", APNS_TOKEN)
VISITOR = "Zoë Quist-Visitorname"


def _with(event: bytes, **fields: Any) -> bytes:
    """`event` (a CloudEvent from devtools.traffic) with `fields` added to its data."""
    decoded = json.loads(event)
    decoded["data"].update(fields)
    return json.dumps(decoded).encode()


async def _site(stack: Stack, site_id: str, **fields: Any) -> None:
    event = traffic.site_updated(site_id, "acct-1", "Alpine Tours", time_to_accept_seconds=60)
    await stack.publisher.send(stack.settings.topic_sites, site_id, _with(event, **fields))


async def _agent(stack: Stack, agent_id: str = "agent-1", **kw: Any) -> None:
    sites = {"site-7": True, "site-8": True}
    devices = kw.pop("devices", [ANDROID, IPHONE])
    await stack.agent(agent_id, sites=sites, devices=devices, **kw)


async def _both(stack: Stack, count: int) -> tuple[list[Any], list[Any]]:
    """The first `count` pushes each phone got (iPhone notifications, Android messages)."""
    iphone = await stack.fakes.apns.notifications.wait_for(lambda items: len(items) >= count, 20)
    android = await stack.fakes.fcm.messages.wait_for(lambda items: len(items) >= count, 20)
    return iphone[:count], android[:count]


async def test_a_sites_own_templates_word_the_alert_without_loc_keys_and_fall_back_when_unfilled(
    stack: Stack,
) -> None:
    await _site(stack, "site-7", push_title="Chat auf {site_name}", push_body="{visitor_name} wartet")
    await _agent(stack)
    await stack.start_worker()
    await stack.request("chat-named", site_id="site-7", tta=30, visitor={"name": "Ada"})
    [iphone], [android] = await _both(stack, 1)

    alert = iphone.payload["aps"]["alert"]
    assert (alert["title"], alert["body"]) == ("Chat auf Alpine Tours", "Ada wartet")
    assert not {"title-loc-key", "loc-key"} & alert.keys(), "the site's wording, not the app's translation"
    assert (android.message["notification"]["title"], android.message["notification"]["body"]) == (
        "Chat auf Alpine Tours",
        "Ada wartet",
    )
    assert not {"title_loc_key", "body_loc_key"} & android.message["android"]["notification"].keys()
    # The body names the visitor: the lock-screen version is the same alert without the name.
    assert android.message["data"]["public_title"] == "Chat auf Alpine Tours"
    assert "Ada" not in android.message["data"]["public_body"]

    # No visitor name: the body template has a hole, so the default body goes (with its key).
    await stack.request("chat-anonymous", site_id="site-7", tta=30)
    iphone_pushes, _ = await _both(stack, 2)
    alert = iphone_pushes[1].payload["aps"]["alert"]
    assert alert["title"] == "Chat auf Alpine Tours"
    assert alert["body"] == "A visitor is waiting for an agent. Tap to open Active chats."
    assert alert["loc-key"] == "livechat_request_body_anonymous"
    assert "title-loc-key" not in alert


def _everything_received(stack: Stack) -> str:
    """Every header, payload and message the provider fakes received, as text (JSON both with
    and without escapes, so a name is found however the client encoded it)."""
    received: list[Any] = [[n.token, n.headers, n.payload] for n in stack.fakes.apns.notifications.items]
    received += [m.message for m in stack.fakes.fcm.messages.items]
    received += list(stack.fakes.fcm.arrivals.items)
    return json.dumps(received, ensure_ascii=False) + json.dumps(received)


async def test_a_site_that_hides_names_sends_the_visitors_name_to_no_phone_and_keeps_it_in_no_round(
    stack: Stack,
) -> None:
    await _site(
        stack,
        "site-7",
        hide_visitor_name=True,
        push_title="{visitor_name} · {site_name}",
        reminder_after_seconds=1,
    )
    await _site(stack, "site-8")  # the same account's other site, which shows names
    await _agent(stack, display_name="Anna")
    changelog = OutputReader(stack.bootstrap, [stack.settings.topic_changelog])
    await changelog.start()
    try:
        await stack.start_worker()
        # Alert and reminder, then the "taken by" update; a second chat goes unanswered: alert,
        # reminder, the missed update, the Missed event and the chatbot's message.
        await stack.request("chat-taken", site_id="site-7", tta=30, visitor={"name": VISITOR})
        await _both(stack, 2)
        await stack.join("chat-taken", site_id="site-7")
        await _both(stack, 3)
        await stack.request("chat-missed", site_id="site-7", tta=3, visitor={"name": VISITOR})
        await stack.wait_missed("chat-missed")
        await _both(stack, 6)

        kinds = [n.payload["type"] for n in stack.fakes.apns.notifications.items]
        assert kinds.count("handoff_requested") == 2
        assert kinds.count("handoff_closed") == 2
        received = _everything_received(stack)
        assert "Zoë" not in received and "Visitorname" not in received
        outputs = [o.raw or b"" for o in stack.missed() + stack.chatbot()]
        assert outputs and not any(b"Visitorname" in raw for raw in outputs)
        await changelog.wait_for(lambda: len(changelog.seen) >= 4, 20, "the rounds' changelog records")
        assert not any(b"Visitorname" in (o.raw or b"") for o in changelog.seen), "no round kept the name"

        # The control: on the site that shows names, the same name reaches the phones and the
        # round keeps it until its fan-out reports (so the checks above could see it).
        await stack.request("chat-shown", site_id="site-8", tta=30, visitor={"name": VISITOR})
        iphone, _ = await _both(stack, 7)
        assert VISITOR in iphone[6].payload["aps"]["alert"]["body"]
        assert VISITOR in _everything_received(stack)
        await changelog.wait_for(
            lambda: any(b"Visitorname" in (o.raw or b"") for o in changelog.seen), 20, "the control round"
        )
    finally:
        await changelog.stop()


async def test_colleagues_phones_are_told_who_took_the_chat(stack: Stack) -> None:
    await _site(stack, "site-7")
    await _agent(stack)  # the agent whose phones ring, no display name
    await _agent(stack, "agent-2", display_name="Bea Müller", devices=[])
    await stack.start_worker()

    await stack.request("chat-1", site_id="site-7", tta=30, visitor={"name": "Ada"})
    await _both(stack, 1)
    await stack.join("chat-1", agent_id="agent-2", site_id="site-7")
    iphone, android = await _both(stack, 2)
    taken = iphone[1].payload
    assert taken["aps"]["alert"] == {
        "title": "Live chat request · Alpine Tours",
        "body": "Taken by Bea Müller",
        "title-loc-key": "livechat_request_title",
        "title-loc-args": ["Alpine Tours"],
        "loc-key": "livechat_closed_accepted_by",
        "loc-args": ["Bea Müller"],
    }
    assert (taken["outcome"], taken["agent_id"], taken["agent_name"]) == ("accepted", "agent-2", "Bea Müller")
    assert android[1].message["notification"]["body"] == "Taken by Bea Müller"
    assert (android[1].message["data"]["agent_id"], android[1].message["data"]["agent_name"]) == (
        "agent-2",
        "Bea Müller",
    )

    # Joined by an agent the directory has no name for: the id in data, a neutral text.
    await stack.request("chat-2", site_id="site-7", tta=30)
    await _both(stack, 3)
    await stack.join("chat-2", agent_id="agent-unlisted", site_id="site-7")
    iphone, _ = await _both(stack, 4)
    assert iphone[3].payload["aps"]["alert"]["body"] == "Taken by an agent"
    assert iphone[3].payload["agent_id"] == "agent-unlisted"
    assert "agent_name" not in iphone[3].payload

    # Ended before anyone joined: no agent at all.
    await stack.request("chat-3", site_id="site-7", tta=30)
    await _both(stack, 5)
    await stack.end("chat-3", site_id="site-7")
    iphone, _ = await _both(stack, 6)
    assert iphone[5].payload["aps"]["alert"]["body"] == "The visitor left"
    assert "agent_id" not in iphone[5].payload


def _repaired(stack: Stack, field: str, action: str, event_type: str = "livechat.site.updated") -> float:
    assert stack.app is not None
    labels = {"type": event_type, "field": field, "action": action}
    return stack.app.metrics.registry.get_sample_value("notifier_fields_repaired_total", labels) or 0.0


async def test_unusable_push_fields_are_repaired_the_site_is_served_and_a_bad_privacy_switch_hides(
    stack: Stack,
) -> None:
    await _site(
        stack,
        "site-7",
        push_title="{site_name} " * 200,  # over 1,024 characters
        push_body=7,
        hide_visitor_name="no",  # not a boolean: taken as on
        reminder_after_seconds="soon",
    )
    await _agent(stack, display_name=["Bea"])  # not a string: dropped, the agent still served
    await stack.start_worker()
    await stack.request("chat-1", site_id="site-7", tta=30, visitor={"name": VISITOR})
    [iphone], [android] = await _both(stack, 1)

    alert = iphone.payload["aps"]["alert"]
    assert (alert["title"], alert["body"]) == (
        "Live chat request · Alpine Tours",
        "A visitor is waiting for an agent. Tap to open Active chats.",
    )
    assert "Visitorname" not in _everything_received(stack)
    assert not stack.dead_letters(), "an optional field is never a reason to dead-letter a site"
    assert _repaired(stack, "push_title", "dropped") == 1
    assert _repaired(stack, "push_body", "dropped") == 1
    assert _repaired(stack, "hide_visitor_name", "failed_safe") == 1
    assert _repaired(stack, "reminder_after_seconds", "dropped") == 1
    assert _repaired(stack, "display_name", "dropped", "livechat.agent.updated") == 1
    assert android.message["notification"]["title"] == "Live chat request · Alpine Tours"
