"""The commands topic's codec: decode a `livechat.push.test_requested` command, encode the
`livechat.push.test_result` that answers it.

A command is decoded like every other consumed record (`envelope.py`: CloudEvents envelope, then
`data` by `type`) and rejected with a `Rejection` when unusable: no usable `agent_id`, a record key
other than the agent id, a type the topic does not carry. The answer's CloudEvents id derives from
the command's id, so a consumer that reads one answer twice (the command was answered again after a
crash, at least once) can drop the copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import msgspec

from service.domain.push import Provider
from service.wire.envelope import DataDecoders, DecodeLimits, Id, Rejected, decode_key, open_record, reject
from service.wire.outbound import cloud_event
from service.wire.rejection import Reason, Rejection

TEST_REQUESTED = "livechat.push.test_requested"
TEST_RESULT = "livechat.push.test_result"


class TestOutcome(StrEnum):
    """What became of the test push to one device (`notifier_test_pushes_total{outcome}`)."""

    __test__ = False  # not a pytest test class, whatever its name

    DELIVERED = "delivered"
    """The provider accepted the push for the device (APNs 200, FCM a message name)."""
    TOKEN_REJECTED = "token_rejected"  # noqa: S105 -- an outcome name, not a credential
    """The provider declared the token dead, now or for an earlier push: the app must register again."""
    FAILED = "failed"
    """Refused (a request bug, bad credentials) or still failing after the retries."""
    NOT_CONFIGURED = "not_configured"
    """This worker has no credentials for the device's provider."""


@dataclass(frozen=True, slots=True)
class TestPushRequested:
    """A decoded command: push a test alert to the agent's devices, or to `device_id` only."""

    __test__ = False

    request_id: str
    """The command's CloudEvents id; the answer's `request_id`."""
    agent_id: str
    device_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceTestResult:
    """The outcome of the test push to one device; `reason` is the provider's, when it gave one."""

    __test__ = False

    device_id: str
    provider: Provider
    outcome: TestOutcome
    reason: str | None = None


class _TestRequestedData(msgspec.Struct, frozen=True):
    agent_id: Id
    device_id: Id | None = None


_COMMANDS: DataDecoders = {TEST_REQUESTED: msgspec.json.Decoder(_TestRequestedData)}


def decode_command(
    key: bytes | None, value: bytes | None, limits: DecodeLimits
) -> TestPushRequested | Rejection:
    """The command in a record of the commands topic, or why it is unusable. Never raises."""
    try:
        envelope_, data = open_record(value, _COMMANDS, limits)
        assert isinstance(data, _TestRequestedData)
        if decode_key(key) != data.agent_id:
            raise reject(Reason.KEY_MISMATCH, "record key differs from data.agent_id", agent_id=data.agent_id)
        return TestPushRequested(envelope_.id, data.agent_id, data.device_id)
    except Rejected as rejected:
        return rejected.rejection


def encode_test_request(command: TestPushRequested, source: str, sent_at_ms: int) -> bytes:
    """The `livechat.push.test_requested` for `command` (what `livechat-notifier test-push` sends)."""
    data: dict[str, object] = {"agent_id": command.agent_id}
    if command.device_id is not None:
        data["device_id"] = command.device_id
    return cloud_event(command.request_id, TEST_REQUESTED, source, sent_at_ms, data)


class _ResultDevice(msgspec.Struct, frozen=True):
    device_id: str
    provider: Provider
    outcome: TestOutcome
    reason: str | None = None


class _ResultData(msgspec.Struct, frozen=True):
    agent_id: str
    request_id: str
    devices: list[_ResultDevice]


class _Result(msgspec.Struct, frozen=True):
    type: str
    data: msgspec.Raw


_RESULT = msgspec.json.Decoder(_Result)
_RESULT_DATA = msgspec.json.Decoder(_ResultData)


def decode_test_result(value: bytes | None, request_id: str) -> list[DeviceTestResult] | None:
    """The devices of the `livechat.push.test_result` answering `request_id`; None when `value` is
    anything else (another answer, another event type of the push-feedback topic, not JSON)."""
    if value is None:
        return None
    try:
        event = _RESULT.decode(value)
        if event.type != TEST_RESULT:
            return None
        data = _RESULT_DATA.decode(event.data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if data.request_id != request_id:
        return None
    return [DeviceTestResult(d.device_id, d.provider, d.outcome, d.reason) for d in data.devices]


def encode_test_result(
    command: TestPushRequested, devices: list[DeviceTestResult], source: str, answered_at_ms: int
) -> bytes:
    """The `livechat.push.test_result` answering `command`; `devices` empty when the agent or the
    device is not known (or has no device)."""
    return cloud_event(
        f"test_result:{command.request_id}",
        TEST_RESULT,
        source,
        answered_at_ms,
        {
            "agent_id": command.agent_id,
            "request_id": command.request_id,
            "devices": [_device(result) for result in devices],
        },
    )


def _device(result: DeviceTestResult) -> dict[str, str]:
    """A reason only when the provider gave one: a consumer reading it as a string never meets null."""
    fields = {
        "device_id": result.device_id,
        "provider": result.provider.value,
        "outcome": result.outcome.value,
    }
    return fields | {"reason": result.reason} if result.reason else fields


def render_test_result(
    agent_id: str, request_id: str, devices: list[DeviceTestResult], *, as_json: bool
) -> str:
    """What `livechat-notifier test-push` prints: the answer's data as JSON, or a table."""
    if as_json:
        data = {"agent_id": agent_id, "request_id": request_id, "devices": [_device(d) for d in devices]}
        return msgspec.json.encode(data).decode()
    if not devices:
        return (
            f"agent {agent_id}: no device tested (agent unknown, no device, or no such device); "
            "see `livechat-notifier explain agent`"
        )
    rows = [("DEVICE", "PROVIDER", "OUTCOME", "REASON")]
    rows += [(d.device_id, d.provider.value, d.outcome.value, d.reason or "-") for d in devices]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[3]])
        for row in rows
    ]
    return f"agent {agent_id}, test {request_id}:\n" + "\n".join(line.rstrip() for line in lines)
