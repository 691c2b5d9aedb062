"""OneOffSender: one push outside any round (support's test push), its outcome returned."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from structlog.testing import capture_logs

from service.domain.effects import AddressedPush
from service.domain.push import AuthHealth, OutcomeKind, Provider, Push, PushKind, PushOutcome
from service.domain.rounds import DeviceRef
from service.observability.metrics import Metrics
from service.push.one_off import OneOffSender
from service.push.push_outcomes import RetryPolicy
from tests.clocks import ManualClock
from tests.pushes import fcm_push

FAST = RetryPolicy(base_s=0.001, cap_s=0.002, max_attempts=3)
UNAVAILABLE = PushOutcome(OutcomeKind.RETRY_LATER, "UNAVAILABLE")


class Scripted:
    """A PushSender answering with its script, then DELIVERED."""

    def __init__(self, *script: PushOutcome) -> None:
        self.script = list(script)
        self.sent: list[Push] = []

    @property
    def provider(self) -> Provider:
        return Provider.FCM

    @property
    def auth(self) -> AuthHealth:
        return AuthHealth()

    async def send(self, push: Push) -> PushOutcome:
        self.sent.append(push)
        return self.script.pop(0) if self.script else PushOutcome(OutcomeKind.DELIVERED)

    async def close(self) -> None:
        return None


def a_test_alert(**overrides: Any) -> AddressedPush:
    push = fcm_push(PushKind.TEST_ALERT, collapse_id="livechat-test-push", data={"type": "test_alert"})
    return AddressedPush(DeviceRef("agent-1", "phone"), replace(push, **overrides))


def one_off(
    sender: Scripted, metrics: Metrics | None = None, clock: ManualClock | None = None
) -> OneOffSender:
    return OneOffSender(
        [sender], metrics or Metrics([]), clock or ManualClock(), retry=FAST, rng=random.Random(1)
    )


async def test_the_providers_answer_is_returned_and_counted_and_logged_once() -> None:
    sender, metrics = Scripted(), Metrics([])
    with capture_logs() as logs:
        outcome = await one_off(sender, metrics).send(a_test_alert())

    assert outcome == PushOutcome(OutcomeKind.DELIVERED)
    assert len(sender.sent) == 1
    labels = {"provider": "fcm", "kind": "test_alert", "outcome": "delivered"}
    assert metrics.registry.get_sample_value("notifier_pushes_total", labels) == 1
    [line] = logs
    assert (line["event"], line["log_level"], line["kind"], line["device_id"]) == (
        "push_sent",
        "info",
        "test_alert",
        "phone",
    )
    assert "chat_id" not in line and "token" not in str(logs)


async def test_a_provider_without_a_sender_gives_none() -> None:
    sender = Scripted()
    apns_alert = a_test_alert(provider=Provider.APNS)
    assert await one_off(sender).send(apns_alert) is None
    assert sender.sent == []


async def test_transient_answers_are_retried_until_delivered() -> None:
    sender = Scripted(UNAVAILABLE, UNAVAILABLE)
    assert await one_off(sender).send(a_test_alert()) == PushOutcome(OutcomeKind.DELIVERED)
    assert len(sender.sent) == 3


async def test_the_last_transient_answer_is_returned_when_attempts_run_out() -> None:
    sender = Scripted(*[UNAVAILABLE] * 5)
    with capture_logs() as logs:
        assert await one_off(sender).send(a_test_alert()) == UNAVAILABLE
    assert len(sender.sent) == FAST.max_attempts
    assert [line["event"] for line in logs] == ["push_attempt_failed", "push_attempt_failed", "push_failed"]


async def test_no_retry_would_start_after_the_push_expired() -> None:
    clock = ManualClock()
    quota = PushOutcome(OutcomeKind.RETRY_LATER, "QUOTA_EXCEEDED", retry_after_s=3600)
    sender = Scripted(quota)
    alert = a_test_alert(expires_at_ms=clock.now_ms() + 60_000)
    with capture_logs() as logs:
        assert await one_off(sender, clock=clock).send(alert) == quota
    assert len(sender.sent) == 1
    assert [line["event"] for line in logs] == ["push_failed"]


async def test_a_dead_token_or_a_request_bug_is_returned_at_once() -> None:
    for answer in (
        PushOutcome(OutcomeKind.TOKEN_DEAD, "UNREGISTERED"),
        PushOutcome(OutcomeKind.REQUEST_BUG, "INVALID_ARGUMENT"),
    ):
        sender = Scripted(answer)
        assert await one_off(sender).send(a_test_alert()) == answer
        assert len(sender.sent) == 1
