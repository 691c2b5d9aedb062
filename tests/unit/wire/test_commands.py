"""The commands topic's codec: `livechat.push.test_requested` in, `livechat.push.test_result` out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from service.domain.push import Provider
from service.wire.commands import (
    TEST_REQUESTED,
    TEST_RESULT,
    DeviceTestResult,
    TestOutcome,
    TestPushRequested,
    decode_command,
    decode_test_result,
    encode_test_request,
    encode_test_result,
    render_test_result,
)
from service.wire.envelope import DecodeLimits
from service.wire.rejection import Reason, Rejection

LIMITS = DecodeLimits()
T0 = 1_800_000_000_000


def command(
    data: Any, *, event_type: str = TEST_REQUESTED, event_id: str = "cmd-1", **envelope: Any
) -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": event_id, "source": "urn:support", "type": event_type, "data": data}
        | envelope
    ).encode()


def test_a_command_for_every_device_of_an_agent() -> None:
    assert decode_command(b"agent-1", command({"agent_id": "agent-1"}), LIMITS) == TestPushRequested(
        "cmd-1", "agent-1", None
    )


def test_a_command_for_one_device() -> None:
    decoded = decode_command(b"agent-1", command({"agent_id": "agent-1", "device_id": "d2"}), LIMITS)
    assert decoded == TestPushRequested("cmd-1", "agent-1", "d2")


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"agent-1", command({}), Reason.BAD_DATA),
        (b"agent-1", command({"agent_id": ""}), Reason.BAD_DATA),
        (b"agent-1", command({"agent_id": 7}), Reason.BAD_DATA),
        (b"agent-1", command({"agent_id": "agent-1", "device_id": ["d1"]}), Reason.BAD_DATA),
        (b"agent-1", command(None), Reason.BAD_DATA),
        (
            b"agent-1",
            command({"agent_id": "agent-1"}, event_type="livechat.push.test_result"),
            Reason.UNKNOWN_TYPE,
        ),
        (b"agent-2", command({"agent_id": "agent-1"}), Reason.KEY_MISMATCH),
        (None, command({"agent_id": "agent-1"}), Reason.KEY_MISMATCH),
        (b"agent-1", b"{not json", Reason.INVALID_JSON),
        (b"agent-1", None, Reason.NULL_VALUE),
        (b"agent-1", command({"agent_id": "agent-1"}, specversion="0.3"), Reason.BAD_SPECVERSION),
    ],
)
def test_unusable_commands_are_rejected_with_a_reason(
    key: bytes | None, value: bytes | None, reason: Reason
) -> None:
    decoded = decode_command(key, value, LIMITS)
    assert isinstance(decoded, Rejection)
    assert decoded.reason is reason


def test_a_rejection_names_the_agent_when_known() -> None:
    decoded = decode_command(b"agent-2", command({"agent_id": "agent-1"}), LIMITS)
    assert isinstance(decoded, Rejection)
    assert decoded.agent_id == "agent-1"


def test_the_result_answers_the_command_by_its_id() -> None:
    request = TestPushRequested("cmd-7", "agent-1", None)
    devices = [
        DeviceTestResult("ios", Provider.APNS, TestOutcome.DELIVERED),
        DeviceTestResult("android", Provider.FCM, TestOutcome.TOKEN_REJECTED, "UNREGISTERED"),
        DeviceTestResult("old", Provider.APNS, TestOutcome.NOT_CONFIGURED),
    ]
    event = json.loads(encode_test_result(request, devices, "urn:livechat-notifier", T0))
    assert event["type"] == TEST_RESULT
    assert event["id"] == "test_result:cmd-7"
    assert event["source"] == "urn:livechat-notifier"
    assert event["data"] == {
        "agent_id": "agent-1",
        "request_id": "cmd-7",
        "devices": [
            {"device_id": "ios", "provider": "apns", "outcome": "delivered"},
            {
                "device_id": "android",
                "provider": "fcm",
                "outcome": "token_rejected",
                "reason": "UNREGISTERED",
            },
            {"device_id": "old", "provider": "apns", "outcome": "not_configured"},
        ],
    }


def test_the_same_command_answered_twice_has_the_same_id() -> None:
    """At least once: a command answered again after a crash can be recognised by its id."""
    request = TestPushRequested("cmd-7", "agent-1", None)
    first = json.loads(encode_test_result(request, [], "urn:x", T0))
    again = json.loads(encode_test_result(request, [], "urn:x", T0 + 5_000))
    assert first["id"] == again["id"]
    assert first["data"]["devices"] == []


def test_the_cli_command_decodes_as_the_worker_reads_it() -> None:
    for sent in (TestPushRequested("cmd-3", "agent-1"), TestPushRequested("cmd-4", "agent-1", "d2")):
        assert decode_command(b"agent-1", encode_test_request(sent, "urn:cli", T0), LIMITS) == sent


def test_the_cli_finds_its_answer_and_nothing_else() -> None:
    devices = [DeviceTestResult("ios", Provider.APNS, TestOutcome.FAILED, "BadTopic")]
    mine = encode_test_result(TestPushRequested("cmd-7", "agent-1"), devices, "urn:x", T0)
    other = encode_test_result(TestPushRequested("cmd-8", "agent-1"), [], "urn:x", T0)
    assert decode_test_result(mine, "cmd-7") == devices
    assert decode_test_result(other, "cmd-7") is None
    rejected = {"type": "livechat.push.token_rejected", "data": {"request_id": "cmd-7"}}
    for value in (json.dumps(rejected).encode(), b"{not json", None):
        assert decode_test_result(value, "cmd-7") is None


def test_the_cli_prints_a_table_or_the_answer_as_json() -> None:
    devices = [
        DeviceTestResult("iphone-15", Provider.APNS, TestOutcome.DELIVERED),
        DeviceTestResult("pixel", Provider.FCM, TestOutcome.TOKEN_REJECTED, "UNREGISTERED"),
    ]
    table = render_test_result("agent-1", "cmd-7", devices, as_json=False).splitlines()
    assert table[1].split() == ["DEVICE", "PROVIDER", "OUTCOME", "REASON"]
    assert table[2].split() == ["iphone-15", "apns", "delivered", "-"]
    assert table[3].split() == ["pixel", "fcm", "token_rejected", "UNREGISTERED"]
    as_json = json.loads(render_test_result("agent-1", "cmd-7", devices, as_json=True))
    assert as_json["devices"][1] == {
        "device_id": "pixel",
        "provider": "fcm",
        "outcome": "token_rejected",
        "reason": "UNREGISTERED",
    }
    assert "no device" in render_test_result("agent-1", "cmd-7", [], as_json=False)
