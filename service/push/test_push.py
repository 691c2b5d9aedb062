"""Support's test push: one test alert to each of an agent's devices (or to one), through the same
senders as the real alerts (`OneOffSender`, one_off.py: same retry policy and outcome accounting),
and what came of it per device.

It is a test of the phone, so it ignores what decides a real alert (live chat availability, the
per-site toggles): support asks "does this phone buzz at all?". Devices whose token a provider
already declared dead are not pushed; they are answered `token_rejected` at once. A transient
failure is retried (`TEST_RETRY`: a few attempts, a short cap, someone is waiting for the answer);
what still fails is answered `failed` with the provider's reason. A provider without credentials
on this worker is answered `not_configured`. Each device's outcome is counted in
`notifier_test_pushes_total{outcome}`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import assert_never

import structlog

from service.clock import Clock
from service.domain.directory import AgentDirectory
from service.domain.effects import AddressedPush
from service.domain.events import Device, TokenRejection
from service.domain.push import LocalizedText, OutcomeKind, Push, PushKind, PushOutcome
from service.domain.rounds import DeviceRef
from service.observability.metrics import Metrics
from service.push.one_off import OneOffSender
from service.push.push_outcomes import RetryPolicy, token_fingerprint
from service.wire.commands import DeviceTestResult, TestOutcome, TestPushRequested

log = structlog.get_logger(__name__)

TEST_PUSH_TTL_MS = 300_000
"""A phone that is offline gets the test within 5 minutes of the request, or never: later, a
"test notification" out of the blue would only confuse the agent."""
TEST_COLLAPSE_ID = "livechat-test-push"
"""One collapse id for every test: a second test replaces the first on the phone."""
TEST_RETRY = RetryPolicy(base_s=0.5, cap_s=4.0, max_attempts=3)
"""Fewer, shorter retries than an alert's: support and the app wait for the answer."""
TITLE = "Test notification"
BODY = "Live chat requests will reach this phone like this one."
TITLE_KEY = "livechat_test_title"
BODY_KEY = "livechat_test_body"


@dataclass(frozen=True, slots=True)
class TestAnswer:
    """Per device, what came of the test; the tokens a provider declared dead during it."""

    __test__ = False

    devices: list[DeviceTestResult]
    rejections: list[tuple[TokenRejection, str]]
    """(rejection, the exact token): to mark dead and report like a real alert's rejection."""


def build_test_alert(device: Device, request_id: str, now_ms: int) -> Push:
    """The test alert for `device`: visible like a real alert, about no chat."""
    return Push(
        provider=device.provider,
        token=device.token,
        kind=PushKind.TEST_ALERT,
        collapse_id=TEST_COLLAPSE_ID,
        expires_at_ms=now_ms + TEST_PUSH_TTL_MS,
        data={"type": PushKind.TEST_ALERT.value, "request_id": request_id},
        title=TITLE,
        body=BODY,
        apns_environment=device.apns_environment,
        title_loc=LocalizedText(TITLE_KEY),
        body_loc=LocalizedText(BODY_KEY),
    )


def devices_to_test(agents: AgentDirectory, command: TestPushRequested) -> list[tuple[Device, bool]]:
    """The devices the command names, each with whether its token is known dead; empty when the
    agent is unknown or has no such device."""
    agent = agents.get(command.agent_id)
    if agent is None:
        return []
    return [
        (device, agents.device(command.agent_id, device.device_id) is None)
        for device in agent.devices
        if command.device_id is None or device.device_id == command.device_id
    ]


def outcome_of(answer: PushOutcome) -> TestOutcome:
    """The test outcome of a provider's final answer."""
    match answer.kind:
        case OutcomeKind.DELIVERED:
            return TestOutcome.DELIVERED
        case OutcomeKind.TOKEN_DEAD:
            return TestOutcome.TOKEN_REJECTED
        case OutcomeKind.REQUEST_BUG | OutcomeKind.RETRY_LATER:
            return TestOutcome.FAILED
        case _:
            assert_never(answer.kind)


class TestPusher:
    """Sends test pushes through the configured senders and says what came of each."""

    __test__ = False

    def __init__(self, one_off: OneOffSender, metrics: Metrics, clock: Clock) -> None:
        self._one_off = one_off
        self._metrics = metrics
        self._clock = clock

    async def answer(self, agents: AgentDirectory, command: TestPushRequested) -> TestAnswer:
        """Push the test to the command's devices concurrently; each one's outcome, in directory order."""
        targets = devices_to_test(agents, command)
        answers = await asyncio.gather(
            *(self._device(command, device, dead=dead) for device, dead in targets)
        )
        rejections = [
            (_rejection(command, device, result), device.token)
            for (device, dead), result in zip(targets, answers, strict=True)
            if result.outcome is TestOutcome.TOKEN_REJECTED and not dead
        ]
        for result in answers:
            self._metrics.test_pushes.labels(result.outcome.value).inc()
        log.info(
            "test_push_answered",
            request_id=command.request_id,
            agent_id=command.agent_id,
            device_id=command.device_id,
            agent_known=agents.get(command.agent_id) is not None,
            outcomes=[f"{result.device_id}:{result.outcome.value}" for result in answers],
        )
        return TestAnswer(list(answers), rejections)

    async def _device(self, command: TestPushRequested, device: Device, *, dead: bool) -> DeviceTestResult:
        def result(outcome: TestOutcome, reason: str | None = None) -> DeviceTestResult:
            return DeviceTestResult(device.device_id, device.provider, outcome, reason or None)

        if dead:  # a real alert would skip it too; the app must register the device again
            return result(TestOutcome.TOKEN_REJECTED)
        push = build_test_alert(device, command.request_id, self._clock.now_ms())
        answer = await self._one_off.send(AddressedPush(DeviceRef(command.agent_id, device.device_id), push))
        if answer is None:  # no sender: this worker has no credentials for the provider
            return result(TestOutcome.NOT_CONFIGURED)
        return result(outcome_of(answer), answer.reason)


def _rejection(command: TestPushRequested, device: Device, result: DeviceTestResult) -> TokenRejection:
    return TokenRejection(
        agent_id=command.agent_id,
        device_id=device.device_id,
        provider=device.provider,
        reason=result.reason or "",
        token_fingerprint=token_fingerprint(device.token),
    )
