"""The fan-out executor with senders that follow the PushSender protocol (no network)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import replace

import pytest
from structlog.testing import capture_logs

from service.domain.effects import AddressedPush, SendPushes
from service.domain.rounds import DeviceRef
from service.observability.metrics import Metrics
from service.push.base import ApnsEnvironment, AuthHealth, OutcomeKind, Provider, Push, PushKind, PushOutcome
from service.push.fanout import DeviceRejected, FanOut, FanOutFinished, FanOutReport, RetryPolicy

NOW = 1_800_000_000_000


class StepClock:
    def __init__(self) -> None:
        self.ms = NOW

    def now_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.ms / 1000


class ScriptedSender:
    """Answers each push for a token with the next outcome of its script (then DELIVERED)."""

    def __init__(self, provider: Provider, script: dict[str, list[PushOutcome]] | None = None) -> None:
        self._provider = provider
        self.script = script or {}
        self.sent: list[Push] = []
        self.on_send: Callable[[Push], None] | None = None

    @property
    def provider(self) -> Provider:
        return self._provider

    @property
    def auth(self) -> AuthHealth:
        return AuthHealth()

    async def send(self, push: Push) -> PushOutcome:
        self.sent.append(push)
        if self.on_send is not None:
            self.on_send(push)
        outcomes = self.script.get(push.token, [])
        return outcomes.pop(0) if outcomes else PushOutcome(OutcomeKind.DELIVERED)

    async def close(self) -> None:
        return None


def job(*tokens: tuple[str, Provider], expires_at_ms: int = NOW + 60_000) -> SendPushes:
    pushes = tuple(
        AddressedPush(
            DeviceRef("agent", f"device-{token}"),
            Push(provider, token, PushKind.HANDOFF_REQUESTED, "chat", expires_at_ms, {}, "t", "b"),
        )
        for token, provider in tokens
    )
    return SendPushes("chat", "req", NOW, pushes, report_delivery=True)


async def run_fan_out(
    senders: list[ScriptedSender], work: SendPushes, clock: StepClock | None = None, **kw: object
) -> list[FanOutReport]:
    reports: list[FanOutReport] = []
    finished = asyncio.Event()

    def report(item: FanOutReport) -> None:
        reports.append(item)
        if isinstance(item, FanOutFinished):
            finished.set()

    fan_out = FanOut(
        {s.provider: s for s in senders},
        Metrics([]),
        clock or StepClock(),
        report,
        retry=RetryPolicy(base_s=0.001, cap_s=0.002, max_attempts=4),
        **kw,  # type: ignore[arg-type]
    )
    fan_out.submit(3, work)
    await asyncio.wait_for(finished.wait(), 5)
    return reports


async def test_reports_the_devices_a_provider_accepted() -> None:
    fcm = ScriptedSender(Provider.FCM, {"bad": [PushOutcome(OutcomeKind.REQUEST_BUG, "INVALID_ARGUMENT")]})
    apns = ScriptedSender(Provider.APNS)
    reports = await run_fan_out(
        [fcm, apns], job(("ok", Provider.FCM), ("bad", Provider.FCM), ("ios", Provider.APNS))
    )
    [finished] = reports
    assert finished == FanOutFinished(
        3, "chat", "req", (DeviceRef("agent", "device-ok"), DeviceRef("agent", "device-ios"))
    )
    assert len(fcm.sent) == 2, "a request bug is not retried"


async def test_dead_token_is_reported_without_retry() -> None:
    fcm = ScriptedSender(Provider.FCM, {"dead": [PushOutcome(OutcomeKind.TOKEN_DEAD, "UNREGISTERED")]})
    reports = await run_fan_out([fcm], job(("dead", Provider.FCM)))
    rejected = [r for r in reports if isinstance(r, DeviceRejected)]
    assert len(rejected) == 1
    assert rejected[0].rejection.reason == "UNREGISTERED"
    assert rejected[0].token == "dead"
    assert "dead" not in rejected[0].rejection.token_fingerprint
    assert len(fcm.sent) == 1


async def test_transient_failures_are_retried_until_delivered() -> None:
    flaky = [
        PushOutcome(OutcomeKind.RETRY_LATER, "UNAVAILABLE"),
        PushOutcome(OutcomeKind.RETRY_LATER, "INTERNAL"),
    ]
    fcm = ScriptedSender(Provider.FCM, {"flaky": flaky})
    [finished] = await run_fan_out([fcm], job(("flaky", Provider.FCM)))
    assert isinstance(finished, FanOutFinished)
    assert finished.delivered == (DeviceRef("agent", "device-flaky"),)
    assert len(fcm.sent) == 3


async def test_retries_stop_at_the_push_expiry() -> None:
    clock = StepClock()
    fcm = ScriptedSender(
        Provider.FCM, {"slow": [PushOutcome(OutcomeKind.RETRY_LATER, "QUOTA", retry_after_s=120)]}
    )
    [finished] = await run_fan_out([fcm], job(("slow", Provider.FCM)), clock)
    assert isinstance(finished, FanOutFinished)
    assert finished.delivered == ()
    assert len(fcm.sent) == 1, "a Retry-After beyond the deadline must not be waited for"


async def test_expired_push_is_not_sent() -> None:
    fcm = ScriptedSender(Provider.FCM)
    [finished] = await run_fan_out([fcm], job(("late", Provider.FCM), expires_at_ms=NOW))
    assert isinstance(finished, FanOutFinished)
    assert finished.delivered == ()
    assert fcm.sent == []


async def test_provider_without_sender_is_skipped() -> None:
    [finished] = await run_fan_out([], job(("ios", Provider.APNS)))
    assert isinstance(finished, FanOutFinished)
    assert finished.delivered == ()


@pytest.mark.parametrize("attempt", [1, 2, 5, 10])
def test_backoff_is_capped_jittered_and_honours_retry_after(attempt: int) -> None:
    policy = RetryPolicy(base_s=0.5, cap_s=4.0)
    rng = random.Random(attempt)
    delays = [policy.delay(attempt, None, rng) for _ in range(200)]
    assert all(0 <= d <= min(4.0, 0.5 * 2 ** (attempt - 1)) for d in delays)
    assert len(set(delays)) > 100, "jittered"
    assert policy.delay(attempt, 7.0, rng) >= 7.0


class BlockingSender(ScriptedSender):
    """Holds every send until `release` is set: a provider that hangs."""

    def __init__(self, provider: Provider) -> None:
        super().__init__(provider)
        self.release = asyncio.Event()

    async def send(self, push: Push) -> PushOutcome:
        self.sent.append(push)
        await self.release.wait()
        return PushOutcome(OutcomeKind.DELIVERED)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the loop run until `predicate()` holds (nothing signals these states)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    assert value is not None, f"{name}{labels} is not exported"
    return value


async def test_pushes_beyond_the_in_flight_bound_and_its_waiting_line_are_shed_and_not_delivered() -> None:
    fcm = BlockingSender(Provider.FCM)
    metrics = Metrics([])
    reports: list[FanOutReport] = []
    fan_out = FanOut(
        {Provider.FCM: fcm}, metrics, StepClock(), reports.append, max_in_flight=2, max_waiting=1
    )
    gate = fan_out.gates[Provider.FCM]

    with capture_logs() as logs:
        fan_out.submit(3, job(*((f"t{i}", Provider.FCM) for i in range(6))))
        await until(lambda: sample(metrics, "notifier_pushes_skipped_total", provider="fcm", why="shed") == 3)
        assert (gate.in_flight, gate.waiting) == (2, 1)
        assert [push.token for push in fcm.sent] == ["t0", "t1"]
        fcm.release.set()
        await until(lambda: len(reports) == 1)
        # The next push finds a free slot: the burst is over.
        fan_out.submit(3, job(("later", Provider.FCM)))
        await until(lambda: len(reports) == 2)

    assert reports[0] == FanOutFinished(
        3,
        "chat",
        "req",
        (DeviceRef("agent", "device-t0"), DeviceRef("agent", "device-t1"), DeviceRef("agent", "device-t2")),
    ), "shed devices must not count as notified"
    assert [push.token for push in fcm.sent] == ["t0", "t1", "t2", "later"]
    assert sample(metrics, "notifier_pushes_skipped_total", provider="fcm", why="shed") == 3
    assert sample(metrics, "notifier_pushes_skipped_total", provider="apns", why="shed") == 0
    shedding = [entry for entry in logs if entry["event"].startswith("push_shedding")]
    assert shedding == [
        {
            "event": "push_shedding_started",
            "log_level": "warning",
            "provider": "fcm",
            "max_in_flight": 2,
            "max_waiting": 1,
        },
        {"event": "push_shedding_stopped", "log_level": "info", "provider": "fcm", "shed": 3, "seconds": 0.0},
    ], "one line when a burst starts, one when it ends"


async def test_a_slow_provider_does_not_hold_up_the_other() -> None:
    fcm = BlockingSender(Provider.FCM)
    apns = ScriptedSender(Provider.APNS)
    reports: list[FanOutReport] = []
    fan_out = FanOut(
        {s.provider: s for s in (fcm, apns)},
        Metrics([]),
        StepClock(),
        reports.append,
        max_in_flight=1,
        max_waiting=0,
    )

    fan_out.submit(1, job(("busy", Provider.FCM)))
    await until(lambda: len(fcm.sent) == 1)
    fan_out.submit(2, job(("shed", Provider.FCM), ("ios", Provider.APNS)))
    await until(lambda: len(reports) == 1)

    assert reports == [FanOutFinished(2, "chat", "req", (DeviceRef("agent", "device-ios"),))]
    fcm.release.set()
    await until(lambda: len(reports) == 2)


async def test_a_token_of_the_other_apns_environment_is_reported_as_a_mismatch_not_dropped() -> None:
    token = "5ec2e7" * 10
    mismatch = PushOutcome(OutcomeKind.DELIVERED, actual_environment=ApnsEnvironment.SANDBOX)
    apns = ScriptedSender(Provider.APNS, {token: [mismatch]})
    metrics = Metrics([])
    reports: list[FanOutReport] = []
    work = job((token, Provider.APNS))
    iphone = DeviceRef("agent", "iphone")
    work = replace(work, pushes=(AddressedPush(iphone, work.pushes[0].push),))

    fan_out = FanOut({Provider.APNS: apns}, metrics, StepClock(), reports.append)
    with capture_logs() as logs:
        fan_out.submit(3, work)
        await until(lambda: len(reports) == 1)

    assert reports == [FanOutFinished(3, "chat", "req", (iphone,))], "delivered where the token belongs"
    assert sample(metrics, "notifier_apns_environment_mismatches_total", configured="production") == 1
    assert sample(metrics, "notifier_apns_environment_mismatches_total", configured="sandbox") == 0
    [line] = [entry for entry in logs if entry["event"] == "apns_environment_mismatch"]
    assert line == {
        "event": "apns_environment_mismatch",
        "log_level": "warning",
        "chat_id": "chat",
        "agent_id": "agent",
        "device_id": "iphone",
        "configured": "production",
        "actual": "sandbox",
        "outcome": "delivered",
        "reason": "",
    }
    assert token not in str(logs)


async def test_a_mismatched_token_that_is_dead_where_it_belongs_is_rejected_with_apples_reason() -> None:
    gone = PushOutcome(OutcomeKind.TOKEN_DEAD, "Unregistered", actual_environment=ApnsEnvironment.PRODUCTION)
    apns = ScriptedSender(Provider.APNS, {"ios": [gone]})
    work = job(("ios", Provider.APNS))
    sandboxed = AddressedPush(
        work.pushes[0].device, replace(work.pushes[0].push, apns_environment=ApnsEnvironment.SANDBOX)
    )

    reports = await run_fan_out([apns], replace(work, pushes=(sandboxed,)))

    [rejected] = [r for r in reports if isinstance(r, DeviceRejected)]
    assert rejected.rejection.reason == "Unregistered"
    assert reports[-1] == FanOutFinished(3, "chat", "req", ())
