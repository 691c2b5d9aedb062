"""Dead letters and personal data on the real broker: with `dead_letter_redact_personal_data` on,
a rejected handoff request's visitor e-mail and a rejected agent snapshot's device token never
reach the dead-letter topic; with it off (the default) the dead letters are the original bytes.
With it on, every kind of garbage of the hostile-input test is still dead-lettered, and the worker
carries on."""

from __future__ import annotations

import json

import pytest

from devtools import traffic
from tests.integration.conftest import MakeStack
from tests.integration.stack import Stack, now_ms
from tests.integration.test_hostile_input import garbage

pytestmark = [pytest.mark.kafka]

EMAIL = "ada.visitor@example.org"
NAME = "Ada Lovelace"
TOKEN = "fcm-token-of-agent-9-0123456789"


async def _reject_one_request_and_one_agent(stack: Stack) -> tuple[bytes, bytes]:
    """A handoff request with a visitor but no usable `requested_at`, and an agent snapshot
    without `account_id`: both rejected as bad data. Returns their values."""
    request = json.loads(
        traffic.handoff_requested("chat-1", "site-1", now_ms(), visitor={"name": NAME, "email": EMAIL})
    )
    request["data"]["requested_at"] = "yesterday"
    bad_request = json.dumps(request).encode()
    agent = json.loads(
        traffic.agent_updated("agent-9", "acct-1", devices=[traffic.device("d1", "fcm", TOKEN)])
    )
    del agent["data"]["account_id"]
    bad_agent = json.dumps(agent).encode()
    await stack.raw("chat-1", bad_request)
    await stack.publisher.send(stack.settings.topic_agents, "agent-9", bad_agent)
    await stack.outputs.wait_for(lambda: len(stack.dead_letters()) >= 2, 30, "two dead letters")
    return bad_request, bad_agent


def _by_source(stack: Stack) -> dict[bytes, tuple[bytes | None, dict[str, bytes]]]:
    return {d.headers["source_topic"]: (d.raw, d.headers) for d in stack.dead_letters()}


async def test_with_redaction_on_no_email_or_token_reaches_the_dead_letter_topic(
    make_stack: MakeStack,
) -> None:
    stack = await make_stack(dead_letter_redact_personal_data=True)
    await stack.site("site-1", "acct-1")
    await stack.start_worker()
    await _reject_one_request_and_one_agent(stack)

    letters = _by_source(stack)
    for topic in (stack.settings.topic_chat_events, stack.settings.topic_agents):
        value, headers = letters[topic.encode()]
        assert value is not None
        assert EMAIL.encode() not in value
        assert NAME.encode() not in value
        assert TOKEN.encode() not in value
        assert (headers["reason"], headers["redacted"]) == (b"bad_data", b"fields")
    request_value, _ = letters[stack.settings.topic_chat_events.encode()]
    assert json.loads(request_value or b"")["data"]["visitor"] == "[redacted]"
    agent_value, _ = letters[stack.settings.topic_agents.encode()]
    assert json.loads(agent_value or b"")["data"]["devices"][0]["device_id"] == "d1"
    assert stack.app is not None
    assert stack.app.ready()


async def test_by_default_the_dead_letters_are_the_original_bytes(make_stack: MakeStack) -> None:
    stack = await make_stack()
    await stack.site("site-1", "acct-1")
    await stack.start_worker()
    bad_request, bad_agent = await _reject_one_request_and_one_agent(stack)

    letters = _by_source(stack)
    request_value, request_headers = letters[stack.settings.topic_chat_events.encode()]
    agent_value, agent_headers = letters[stack.settings.topic_agents.encode()]
    assert (request_value, agent_value) == (bad_request, bad_agent)
    assert "redacted" not in request_headers
    assert "redacted" not in agent_headers


async def test_with_redaction_on_every_kind_of_garbage_is_still_dead_lettered(make_stack: MakeStack) -> None:
    stack = await make_stack(max_value_bytes=16_384, dead_letter_redact_personal_data=True)
    await stack.site("site-1", "acct-1")
    await stack.start_worker()
    bad = garbage("chat-7")
    for value, _ in bad:
        await stack.raw("chat-7", value)
    await stack.outputs.wait_for(lambda: len(stack.dead_letters()) >= len(bad), 30, "every dead letter")

    letters = stack.dead_letters()
    assert sorted(d.headers["reason"].decode() for d in letters) == sorted(reason for _, reason in bad)
    by_reason = {d.headers["reason"]: d for d in letters}
    for reason in (b"not_utf8", b"invalid_json", b"too_deep"):  # nothing to redact field-wise: dropped
        assert (by_reason[reason].raw, by_reason[reason].headers["redacted"]) == (None, b"body")
    too_large = by_reason[b"too_large"]  # its 20,000-character visitor name is gone
    assert too_large.headers["redacted"] == b"fields"
    assert too_large.raw is not None
    assert b"x" * 100 not in too_large.raw
    await stack.request("chat-8", tta=1)  # and the worker carries on
    await stack.wait_missed("chat-8")
