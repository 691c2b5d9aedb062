"""Issue #10 item 4 on the real broker: partial and oversized data never silence a site or a visitor.

A site snapshot with a missing or unusable optional field is applied with that field dropped or
clamped (and counted), so requests for the site are pushed and answered; a request with bad
optional fields is served. Each test publishes the damaged record as another team's service would.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from devtools import traffic
from service.app import Application
from service.wire.outbound import rfc3339
from tests.integration.conftest import MakeStack
from tests.integration.kafka_helpers import eventually
from tests.integration.stack import Stack, now_ms

pytestmark = [pytest.mark.kafka]

ANDROID = traffic.device("android", "fcm", "fcm-token-partial")
SITE_UPDATED = "livechat.site.updated"
HANDOFF_REQUESTED = "livechat.chat.handoff_requested"


async def publish_site(stack: Stack, **data: Any) -> None:
    """A site snapshot exactly as given (`traffic.site_updated` would fill in every field)."""
    data = {"site_id": "site-1", "account_id": "acct-1"} | data
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "urn:site-service",
        "type": SITE_UPDATED,
    }
    value = json.dumps(event | {"data": data}).encode()
    await stack.publisher.send(stack.settings.topic_sites, data["site_id"], value)


async def world(stack: Stack, **site: Any) -> Application:
    await publish_site(stack, **site)
    await stack.agent("agent-1", sites={"site-1": True}, devices=[ANDROID])
    return await stack.start_worker()


def repaired(app: Application, event_type: str, field: str, action: str) -> float:
    labels = {"type": event_type, "field": field, "action": action}
    return app.metrics.registry.get_sample_value("notifier_fields_repaired_total", labels) or 0.0


async def missed_round(stack: Stack, chat_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The chat's alert was pushed; then its Missed and chatbot message (data of each)."""
    await stack.fakes.fcm.messages.wait_for(
        lambda _: bool(stack.fcm_to(ANDROID["token"], "handoff_requested")), 20
    )
    missed = await stack.wait_missed(chat_id)
    [chatbot] = stack.chatbot(chat_id)
    assert missed.value is not None and chatbot.value is not None
    return missed.value["data"], chatbot.value["data"]


async def test_site_without_phone_is_known_and_the_chatbot_gives_the_email_only(stack: Stack) -> None:
    app = await world(
        stack, name="Alpine Tours", time_to_accept_seconds=2, contact={"email": "hello@alpine.example"}
    )
    await stack.request("chat-1", visitor={"name": "Ada"})

    missed, chatbot = await missed_round(stack, "chat-1")
    assert missed["agents_notified"] == 1
    assert chatbot["text"] == (
        "Sorry, nobody from Alpine Tours could join the chat just now. "
        "Please write to us at hello@alpine.example and we will get back to you."
    )
    assert chatbot["contact"] == {"email": "hello@alpine.example"}
    assert stack.dead_letters() == []
    # An absent phone is valid (optional in the contract): nothing to report.
    assert repaired(app, SITE_UPDATED, "contact.phone", "dropped") == 0


async def test_site_without_any_contact_still_pushes_and_answers_the_visitor(stack: Stack) -> None:
    app = await world(stack, name="Alpine Tours", time_to_accept_seconds=2, contact={"phone": 41_44_000})

    await stack.request("chat-1")

    missed, chatbot = await missed_round(stack, "chat-1")
    assert missed["agents_notified"] == 1
    assert chatbot["text"] == (
        "Sorry, nobody from Alpine Tours could join the chat just now. Please try again a little later."
    )
    assert chatbot["contact"] == {}
    assert stack.dead_letters() == []
    assert repaired(app, SITE_UPDATED, "contact.phone", "dropped") == 1  # a number, not a string


async def test_request_with_overlong_name_and_bad_override_is_served_on_the_sites_time(stack: Stack) -> None:
    app = await world(
        stack,
        name="Alpine Tours",
        time_to_accept_seconds=2,
        contact={"email": "hello@alpine.example", "phone": "+41 44 000 00 00"},
    )
    requested_ms = now_ms()
    data = {
        "chat_id": "chat-1",
        "site_id": "site-1",
        "requested_at": rfc3339(requested_ms),
        "visitor": {"name": "Ada " * 2_000},
        "time_to_accept_seconds": 0,
    }
    event = {"specversion": "1.0", "id": "req-1", "source": "urn:chatbot", "type": HANDOFF_REQUESTED}
    await stack.raw("chat-1", json.dumps(event | {"data": data}).encode())

    missed, _ = await missed_round(stack, "chat-1")
    [alert] = stack.fcm_to(ANDROID["token"], "handoff_requested")
    assert alert.message["notification"]["body"].startswith("Ada Ada")
    deadline_ms = requested_ms + 2_000  # the site's time to accept, not the override of 0
    assert missed["deadline_at"] == rfc3339(deadline_ms)
    assert stack.dead_letters() == []
    await eventually(lambda: repaired(app, HANDOFF_REQUESTED, "visitor.name", "truncated") == 1, 10)
    assert repaired(app, HANDOFF_REQUESTED, "time_to_accept_seconds", "dropped") == 1


async def test_site_with_out_of_range_time_to_accept_is_known_and_clamped(make_stack: MakeStack) -> None:
    stack = await make_stack(max_time_to_accept_seconds=2)
    app = await world(
        stack,
        name="Alpine Tours",
        time_to_accept_seconds=86_400 * 365,
        contact={"email": "hello@alpine.example", "phone": "+41 44 000 00 00"},
    )
    requested_ms = now_ms()
    await stack.request("chat-1", at_ms=requested_ms)

    missed, _ = await missed_round(stack, "chat-1")
    assert missed["deadline_at"] == rfc3339(requested_ms + 2_000)  # clamped to the maximum
    assert stack.dead_letters() == []
    assert repaired(app, SITE_UPDATED, "time_to_accept_seconds", "clamped") == 1
