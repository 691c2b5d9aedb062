"""The fan-out executor with senders that follow the PushSender protocol (no network)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import replace

import pytest
from structlog.testing import capture_logs

from service.domain.effects import AddressedPush, SendPushes
from service.domain.push import (
    ApnsEnvironment,
    AuthHealth,
    OutcomeKind,
    Provider,
    Push,
    PushKind,
    PushOutcome,
    SkipReason,
)
from service.domain.reports import DeviceRejected, FanOutFinished, FanOutReport
from service.domain.rounds import DeviceRef
from service.observability.metrics import Metrics
from service.push.fanout import FanOut
from service.push.push_outcomes import RetryPolicy
from service.push.push_queue import QUEUED_PUSH_OVERHEAD_B
from tests.clocks import LoopClock, ManualClock

NOW = 1_800_000_000_000
ALERT = PushKind.HANDOFF_REQUESTED
CLOSED = PushKind.HANDOFF_CLOSED


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
    senders: list[ScriptedSender], work: SendPushes, clock: ManualClock | None = None, **kw: object
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
        clock or ManualClock(),
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
    ok, bad, ios = (DeviceRef("agent", f"device-{name}") for name in ("ok", "bad", "ios"))
    assert finished == FanOutFinished(3, "chat", "req", (ok, ios), failed=(bad,), covered=(ok, bad, ios))
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
    clock = ManualClock()
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
    backoff = policy.backoff(random.Random(attempt))
    delays = [backoff.delay(attempt) for _ in range(200)]
    assert all(0 <= d <= min(4.0, 0.5 * 2 ** (attempt - 1)) for d in delays)
    assert len(set(delays)) > 100, "jittered"
    assert backoff.delay(attempt, 7.0) >= 7.0


class BlockingSender(ScriptedSender):
    """Holds every send until `release` is set: a provider that hangs, then delivers."""

    def __init__(self, provider: Provider) -> None:
        super().__init__(provider)
        self.release = asyncio.Event()

    @property
    def sent_count(self) -> int:
        return len(self.sent)

    async def send(self, push: Push) -> PushOutcome:
        self.sent.append(push)
        await self.release.wait()
        return PushOutcome(OutcomeKind.DELIVERED)


class HeldSender(ScriptedSender):
    """Holds each send until the test gives it its answer (`answer`), one at a time, in order."""

    def __init__(self, provider: Provider) -> None:
        super().__init__(provider)
        self._answers: list[asyncio.Future[PushOutcome]] = []

    @property
    def waiting(self) -> bool:
        return any(not answer.done() for answer in self._answers)

    def answer(self, outcome: PushOutcome) -> None:
        next(answer for answer in self._answers if not answer.done()).set_result(outcome)

    async def send(self, push: Push) -> PushOutcome:
        self.sent.append(push)
        answer: asyncio.Future[PushOutcome] = asyncio.get_running_loop().create_future()
        self._answers.append(answer)
        return await answer


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the loop run until `predicate()` holds (nothing signals these states)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    assert value is not None, f"{name}{labels} is not exported"
    return value


def skipped_pushes(metrics: Metrics) -> dict[str, float]:
    """Non-zero `notifier_pushes_skipped_total` series, as "provider/why"."""
    found = {}
    for provider in Provider:
        for why in SkipReason:
            value = sample(metrics, "notifier_pushes_skipped_total", provider=provider.value, why=why.value)
            if value:
                found[f"{provider.value}/{why.value}"] = value
    return found


def alerts(
    *tokens: tuple[str, Provider, int], chat: str = "chat", request: str = "req", kind: PushKind = ALERT
) -> SendPushes:
    """A job of one push per (token, provider, expires_at_ms); the device id is the token."""
    pushes = tuple(
        AddressedPush(DeviceRef("agent", token), Push(provider, token, kind, chat, expires, {}, "t", "b"))
        for token, provider, expires in tokens
    )
    return SendPushes(chat, request, NOW, pushes, report_delivery=kind is ALERT)


def finished(reports: list[FanOutReport]) -> list[FanOutFinished]:
    return [r for r in reports if isinstance(r, FanOutFinished)]


async def test_pushes_wait_for_a_slot_earliest_expiry_first() -> None:
    fcm = BlockingSender(Provider.FCM)
    reports: list[FanOutReport] = []
    fan_out = FanOut({Provider.FCM: fcm}, Metrics([]), ManualClock(), reports.append, max_in_flight=1)

    fan_out.submit(3, alerts(("busy", Provider.FCM, NOW + 90_000), chat="c0"))
    await until(lambda: len(fcm.sent) == 1)
    for chat, seconds in [("c1", 50), ("c2", 10), ("c3", 30), ("c4", 20)]:
        fan_out.submit(3, alerts((chat, Provider.FCM, NOW + seconds * 1000), chat=chat))
    assert fan_out.queues[Provider.FCM].waiting == 4
    fcm.release.set()
    await until(lambda: len(finished(reports)) == 5)

    assert [push.token for push in fcm.sent] == ["busy", "c2", "c4", "c3", "c1"]


async def test_a_burst_far_beyond_the_slots_is_delivered_completely_nothing_shed() -> None:
    fcm = BlockingSender(Provider.FCM)
    apns = BlockingSender(Provider.APNS)
    metrics = Metrics([])
    reports: list[FanOutReport] = []
    fan_out = FanOut(
        {s.provider: s for s in (fcm, apns)}, metrics, ManualClock(), reports.append, max_in_flight=2
    )
    rounds = 200
    for n in range(rounds):
        devices = [(f"a{n}-{d}", Provider.FCM, NOW + 60_000) for d in range(5)]
        devices += [(f"i{n}-{d}", Provider.APNS, NOW + 60_000) for d in range(5)]
        fan_out.submit(n % 4, alerts(*devices, chat=f"chat-{n}", request=f"req-{n}"))

    await until(lambda: (fcm.sent_count, apns.sent_count) == (2, 2))
    assert fan_out.queues[Provider.FCM].held == fan_out.queues[Provider.APNS].held == 1_000
    assert sample(metrics, "notifier_push_queue_pushes", provider="fcm") == 1_000
    assert sample(metrics, "notifier_push_queue_bytes", provider="apns") > 1_000 * QUEUED_PUSH_OVERHEAD_B
    fcm.release.set()
    apns.release.set()
    await until(lambda: len(finished(reports)) == rounds)

    assert skipped_pushes(metrics) == {}
    assert all(len(report.delivered) == 10 and report.unsure == () for report in finished(reports))
    assert sample(metrics, "notifier_push_queue_pushes", provider="fcm") == 0
    assert sample(metrics, "notifier_push_queue_bytes", provider="fcm") == 0


async def test_only_expired_pushes_are_dropped_even_while_every_slot_is_busy() -> None:
    clock = LoopClock()
    fcm = BlockingSender(Provider.FCM)
    metrics = Metrics([])
    reports: list[FanOutReport] = []
    fan_out = FanOut({Provider.FCM: fcm}, metrics, clock, reports.append, max_in_flight=1)
    start = clock.now_ms()

    fan_out.submit(3, alerts(("busy", Provider.FCM, start + 60_000), chat="busy"))
    await until(lambda: fcm.sent_count == 1)
    fan_out.submit(3, alerts(("soon", Provider.FCM, start + 50), ("later", Provider.FCM, start + 60_000)))
    # The slot stays busy: the expiry timer, not a freed slot, drops the expired push.
    await until(lambda: skipped_pushes(metrics) == {"fcm/expired": 1})
    assert fan_out.queues[Provider.FCM].waiting == 1
    fcm.release.set()
    await until(lambda: len(finished(reports)) == 2)

    assert [push.token for push in fcm.sent] == ["busy", "later"]
    assert finished(reports)[-1].delivered == (DeviceRef("agent", "later"),)


async def test_past_the_memory_bound_the_fan_out_is_saturated_and_still_drops_nothing() -> None:
    fcm = BlockingSender(Provider.FCM)
    metrics = Metrics([])
    reports: list[FanOutReport] = []
    limit = 20 * QUEUED_PUSH_OVERHEAD_B
    fan_out = FanOut(
        {Provider.FCM: fcm}, metrics, ManualClock(), reports.append, max_in_flight=2, max_queue_bytes=limit
    )

    with capture_logs() as logs:
        for n in range(19):
            fan_out.submit(3, alerts((f"t{n}", Provider.FCM, NOW + 60_000), chat=f"c{n}"))
        below = fan_out.saturated
        fan_out.submit(3, alerts(*((f"u{n}", Provider.FCM, NOW + 60_000) for n in range(5)), chat="big"))
        assert (below, fan_out.saturated) == (False, True)
        assert not await fan_out.wait_unsaturated(0.01)
        assert sample(metrics, "notifier_push_queue_limit_bytes", provider="fcm") == limit
        assert sample(metrics, "notifier_push_queue_bytes", provider="fcm") >= limit
        fcm.release.set()
        assert await fan_out.wait_unsaturated(5)
        await until(lambda: len(finished(reports)) == 20)

    assert not fan_out.saturated
    assert skipped_pushes(metrics) == {}
    assert fcm.sent_count == 24
    assert [e["event"] for e in logs if e["event"].startswith("push_queue")] == [
        "push_queue_saturated",
        "push_queue_unsaturated",
    ]


async def test_a_closing_update_stops_the_rounds_alerts_and_leaves_the_next_round_alone() -> None:
    unavailable = PushOutcome(OutcomeKind.RETRY_LATER, "UNAVAILABLE", retry_after_s=5.0)
    fcm = ScriptedSender(Provider.FCM, {"android": [unavailable]})
    apns = HeldSender(Provider.APNS)
    metrics = Metrics([])
    reports: list[FanOutReport] = []
    fan_out = FanOut(
        {s.provider: s for s in (fcm, apns)}, metrics, ManualClock(), reports.append, max_in_flight=1
    )
    expires = NOW + 60_000
    devices = [
        ("android", Provider.FCM, expires),
        ("iphone", Provider.APNS, expires),
        ("ipad", Provider.APNS, expires),
    ]

    fan_out.submit(3, alerts(*devices, request="r1"))
    await until(lambda: len(fcm.sent) == 1 and len(apns.sent) == 1)
    # android waits out a 5 s Retry-After, iphone is in flight, ipad waits for the slot.
    fan_out.submit(3, alerts(("next-round", Provider.APNS, expires), request="r2"))
    fan_out.submit(3, alerts(*devices, request="r1", kind=CLOSED))
    assert skipped_pushes(metrics) == {"fcm/round_closed": 1, "apns/round_closed": 1}
    apns.answer(PushOutcome(OutcomeKind.RETRY_LATER, "UNAVAILABLE"))  # iphone: not retried
    await until(lambda: len(finished(reports)) == 1)
    for _ in range(3):  # next round's alert, then the closing updates of iphone and ipad
        await until(lambda: apns.waiting)
        apns.answer(PushOutcome(OutcomeKind.DELIVERED))
    await until(lambda: len(finished(reports)) == 2)

    assert skipped_pushes(metrics) == {"fcm/round_closed": 1, "apns/round_closed": 2}
    first, second = finished(reports)
    assert (first.request_id, first.delivered, first.unsure) == ("r1", (), ())
    assert (second.request_id, second.delivered) == ("r2", (DeviceRef("agent", "next-round"),))
    sent = [(push.token, push.kind) for push in [*fcm.sent, *apns.sent]]
    assert sent.count(("android", ALERT)) == sent.count(("iphone", ALERT)) == 1
    assert ("ipad", ALERT) not in sent
    await until(lambda: fan_out.in_flight == 0)  # the closing updates are done
    sent = [(push.token, push.kind) for push in [*fcm.sent, *apns.sent]]
    assert {("android", CLOSED), ("iphone", CLOSED), ("ipad", CLOSED)} <= set(sent)


async def test_devices_a_request_may_have_reached_without_an_answer_are_reported_unsure() -> None:
    timeout = PushOutcome(OutcomeKind.RETRY_LATER, "timeout")
    dropped = PushOutcome(OutcomeKind.RETRY_LATER, "connection_error")
    unavailable = PushOutcome(OutcomeKind.RETRY_LATER, "UNAVAILABLE")
    script = {
        "timed-out": [timeout] * 4,  # retries ran out
        "expired": [dropped, PushOutcome(OutcomeKind.RETRY_LATER, "QUOTA", retry_after_s=120)],
        "unavailable": [unavailable] * 4,  # answered every time: known not delivered
        "late": [timeout, PushOutcome(OutcomeKind.DELIVERED)],
        "dead": [timeout, PushOutcome(OutcomeKind.TOKEN_DEAD, "UNREGISTERED")],
    }
    fcm = ScriptedSender(Provider.FCM, script)
    reports = await run_fan_out([fcm], job(*((token, Provider.FCM) for token in script)))

    [report] = finished(reports)
    assert report.delivered == (DeviceRef("agent", "device-late"),)
    assert report.unsure == (DeviceRef("agent", "device-timed-out"), DeviceRef("agent", "device-expired"))


async def test_a_slow_provider_does_not_hold_up_the_other() -> None:
    fcm = BlockingSender(Provider.FCM)
    apns = ScriptedSender(Provider.APNS)
    reports: list[FanOutReport] = []
    fan_out = FanOut(
        {s.provider: s for s in (fcm, apns)}, Metrics([]), ManualClock(), reports.append, max_in_flight=1
    )

    fan_out.submit(1, job(("busy", Provider.FCM)))
    await until(lambda: len(fcm.sent) == 1)
    fan_out.submit(2, job(("queued", Provider.FCM), ("ios", Provider.APNS)))
    await until(lambda: len(apns.sent) == 1)
    assert reports == []
    fcm.release.set()
    await until(lambda: len(reports) == 2)

    both = (DeviceRef("agent", "device-queued"), DeviceRef("agent", "device-ios"))
    assert reports[1] == FanOutFinished(2, "chat", "req", both, covered=both)


async def test_a_lost_partition_stops_its_pushes_without_a_report_and_frees_their_slots() -> None:
    fcm = BlockingSender(Provider.FCM)
    reports: list[FanOutReport] = []
    fan_out = FanOut({Provider.FCM: fcm}, Metrics([]), ManualClock(), reports.append, max_in_flight=1)

    fan_out.submit(1, job(("lost-busy", Provider.FCM), ("lost-queued", Provider.FCM)))
    await until(lambda: len(fcm.sent) == 1)
    fan_out.submit(2, job(("kept", Provider.FCM)))
    await fan_out.cancel_partition(1)
    fcm.release.set()
    await until(lambda: len(reports) == 1)

    kept = (DeviceRef("agent", "device-kept"),)
    assert reports == [FanOutFinished(2, "chat", "req", kept, covered=kept)]
    assert [push.token for push in fcm.sent] == ["lost-busy", "kept"]
    assert fan_out.queues[Provider.FCM].held_bytes == 0


async def test_a_token_of_the_other_apns_environment_is_reported_as_a_mismatch_not_dropped() -> None:
    token = "5ec2e7" * 10
    mismatch = PushOutcome(OutcomeKind.DELIVERED, actual_environment=ApnsEnvironment.SANDBOX)
    apns = ScriptedSender(Provider.APNS, {token: [mismatch]})
    metrics = Metrics([])
    reports: list[FanOutReport] = []
    work = job((token, Provider.APNS))
    iphone = DeviceRef("agent", "iphone")
    work = replace(work, pushes=(AddressedPush(iphone, work.pushes[0].push),))

    fan_out = FanOut({Provider.APNS: apns}, metrics, ManualClock(), reports.append)
    with capture_logs() as logs:
        fan_out.submit(3, work)
        await until(lambda: len(reports) == 1)

    assert reports == [FanOutFinished(3, "chat", "req", (iphone,), covered=(iphone,))], (
        "delivered where it belongs"
    )
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
    device = work.pushes[0].device
    assert reports[-1] == FanOutFinished(3, "chat", "req", (), rejected=(device,), covered=(device,))


async def test_each_attempt_logs_its_outcome_once_and_a_failure_says_push_failed_once() -> None:
    flaky = [PushOutcome(OutcomeKind.RETRY_LATER, "UNAVAILABLE")] * 2
    fcm = ScriptedSender(
        Provider.FCM,
        {
            "flaky": flaky,
            "bad": [PushOutcome(OutcomeKind.REQUEST_BUG, "INVALID_ARGUMENT")],
            "down": [PushOutcome(OutcomeKind.RETRY_LATER, "INTERNAL")] * 4,
            "dead": [PushOutcome(OutcomeKind.TOKEN_DEAD, "UNREGISTERED")],
        },
    )
    with capture_logs() as logs:
        await run_fan_out([fcm], job(*((token, Provider.FCM) for token in ("flaky", "bad", "down", "dead"))))

    lines = [(line["event"], line["device_id"], line["log_level"]) for line in logs]
    assert sorted(lines) == sorted(
        [
            ("push_attempt_failed", "device-flaky", "info"),
            ("push_attempt_failed", "device-flaky", "info"),
            ("push_sent", "device-flaky", "info"),
            ("push_failed", "device-bad", "warning"),
            ("push_attempt_failed", "device-down", "info"),
            ("push_attempt_failed", "device-down", "info"),
            ("push_attempt_failed", "device-down", "info"),
            ("push_failed", "device-down", "warning"),  # the 4th attempt was the last
            ("push_token_rejected", "device-dead", "info"),
        ]
    )
    [bad] = [line for line in logs if line["event"] == "push_failed" and line["device_id"] == "device-bad"]
    assert bad == {
        "event": "push_failed",
        "log_level": "warning",
        "chat_id": "chat",
        "agent_id": "agent",
        "device_id": "device-bad",
        "provider": "fcm",
        "kind": "handoff_requested",
        "outcome": "request_bug",
        "reason": "INVALID_ARGUMENT",
        "attempts": 1,
    }
    assert all("token" not in line for line in logs), "tokens are never logged"


# -- per-device results (#12): delivered / unsure / rejected / failed / never sent -------------------


async def test_each_device_is_reported_by_what_became_of_its_push() -> None:
    script = {
        "ok": [],
        "timed-out": [PushOutcome(OutcomeKind.RETRY_LATER, "timeout")] * 4,
        "dead": [PushOutcome(OutcomeKind.TOKEN_DEAD, "UNREGISTERED")],
        "bad": [PushOutcome(OutcomeKind.REQUEST_BUG, "INVALID_ARGUMENT")],
        "down": [PushOutcome(OutcomeKind.RETRY_LATER, "UNAVAILABLE")] * 4,  # retries ran out
        "too-late": [PushOutcome(OutcomeKind.RETRY_LATER, "QUOTA_EXCEEDED", retry_after_s=120)],
    }
    fcm = ScriptedSender(Provider.FCM, script)
    work = job(*((token, Provider.FCM) for token in script), ("ios", Provider.APNS))  # no APNs sender

    [report] = finished(await run_fan_out([fcm], work))

    def refs(*tokens: str) -> tuple[DeviceRef, ...]:
        return tuple(DeviceRef("agent", f"device-{token}") for token in tokens)

    assert report.delivered == refs("ok")
    assert report.unsure == refs("timed-out")
    assert report.rejected == refs("dead")
    assert report.failed == refs("bad", "down", "too-late", "ios")
    assert report.covered == refs(*script, "ios")


async def test_a_push_that_expired_before_it_was_sent_is_in_no_tuple_so_pending() -> None:
    clock = LoopClock()
    fcm = BlockingSender(Provider.FCM)
    reports: list[FanOutReport] = []
    fan_out = FanOut({Provider.FCM: fcm}, Metrics([]), clock, reports.append, max_in_flight=1)
    start = clock.now_ms()

    fan_out.submit(3, alerts(("busy", Provider.FCM, start + 60_000), chat="busy", request="r0"))
    await until(lambda: fcm.sent_count == 1)
    fan_out.submit(3, alerts(("waits", Provider.FCM, start + 50), ("gone", Provider.FCM, start - 1)))
    await until(lambda: len(finished(reports)) == 1)  # the expiry timer dropped "waits"

    [report] = finished(reports)
    assert report.request_id == "req"
    assert (report.delivered, report.unsure, report.rejected, report.failed) == ((), (), (), ())
    assert report.covered == (DeviceRef("agent", "waits"), DeviceRef("agent", "gone"))
    fcm.release.set()
    await until(lambda: len(finished(reports)) == 2)
    assert [push.token for push in fcm.sent] == ["busy"]


REMINDER = PushKind.HANDOFF_REMINDER


async def test_a_closing_update_drops_the_rounds_reminders_like_its_alerts() -> None:
    fcm = BlockingSender(Provider.FCM)
    metrics = Metrics([])
    reports: list[FanOutReport] = []
    fan_out = FanOut({Provider.FCM: fcm}, metrics, ManualClock(), reports.append, max_in_flight=1)
    expires = NOW + 60_000

    fan_out.submit(3, alerts(("busy", Provider.FCM, expires), chat="other", request="r0"))
    await until(lambda: fcm.sent_count == 1)
    fan_out.submit(3, alerts(("phone", Provider.FCM, expires), request="r1", kind=REMINDER))
    fan_out.submit(3, alerts(("phone", Provider.FCM, expires), request="r1", kind=CLOSED))
    assert skipped_pushes(metrics) == {"fcm/round_closed": 1}
    fcm.release.set()
    await until(lambda: fan_out.in_flight == 0)

    assert [(push.token, push.kind) for push in fcm.sent] == [("busy", ALERT), ("phone", CLOSED)]


async def test_reminders_and_test_alerts_log_at_info_and_only_the_alert_measures_request_to_push() -> None:
    fcm = ScriptedSender(Provider.FCM)
    metrics = Metrics([])
    fan_out = FanOut({Provider.FCM: fcm}, metrics, ManualClock(), lambda _: None)

    with capture_logs() as logs:
        for kind in (REMINDER, PushKind.TEST_ALERT, CLOSED):
            fan_out.submit(3, alerts(("phone", Provider.FCM, NOW + 60_000), request=kind.value, kind=kind))
        await until(lambda: fan_out.in_flight == 0)

    sent = [(line["kind"], line["log_level"]) for line in logs if line["event"] == "push_sent"]
    assert sent == [("handoff_reminder", "info"), ("test_alert", "info"), ("handoff_closed", "debug")]
    assert sample(metrics, "notifier_handoff_to_push_seconds_count", provider="fcm") == 0
