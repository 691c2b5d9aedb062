"""Support's test push (push/test_push.py): which devices, what each outcome becomes, what is counted."""

from __future__ import annotations

from service.domain.directory import AgentDirectory
from service.domain.push import OutcomeKind, Provider, PushKind, PushOutcome
from service.observability.metrics import Metrics
from service.push.one_off import OneOffSender
from service.push.push_outcomes import RetryPolicy, token_fingerprint
from service.push.test_push import TestPusher, build_test_alert
from service.wire.commands import DeviceTestResult, TestOutcome, TestPushRequested
from tests.clocks import ManualClock
from tests.unit.factories import agent, device
from tests.unit.push.test_fanout import ScriptedSender

IOS = device("ios", Provider.APNS, "apns-token")
ANDROID = device("android", Provider.FCM, "fcm-token")
FAST_RETRY = RetryPolicy(base_s=0.001, cap_s=0.001, max_attempts=3)


def directory(*devices: object, available: bool = False) -> AgentDirectory:
    """Agent-1 with `devices`; by default unavailable and with no push toggle: a test ignores both."""
    agents = AgentDirectory()
    agents.upsert(agent("agent-1", available=available, push_enabled={}, devices=devices))  # type: ignore[arg-type]
    return agents


def pusher(*senders: ScriptedSender) -> tuple[TestPusher, Metrics]:
    metrics = Metrics(["commands"])
    clock = ManualClock()
    return TestPusher(OneOffSender(senders, metrics, clock, retry=FAST_RETRY), metrics, clock), metrics


def counted(metrics: Metrics, outcome: TestOutcome) -> float:
    value = metrics.registry.get_sample_value("notifier_test_pushes_total", {"outcome": outcome.value})
    assert value is not None
    return value


async def test_every_device_gets_a_test_alert_whatever_availability_and_toggles_say() -> None:
    apns, fcm = ScriptedSender(Provider.APNS), ScriptedSender(Provider.FCM)
    test, metrics = pusher(apns, fcm)
    answer = await test.answer(directory(IOS, ANDROID), TestPushRequested("cmd-1", "agent-1"))
    assert answer.devices == [
        DeviceTestResult("ios", Provider.APNS, TestOutcome.DELIVERED),
        DeviceTestResult("android", Provider.FCM, TestOutcome.DELIVERED),
    ]
    assert [(p.kind, p.token, p.data["request_id"]) for p in apns.sent + fcm.sent] == [
        (PushKind.TEST_ALERT, "apns-token", "cmd-1"),
        (PushKind.TEST_ALERT, "fcm-token", "cmd-1"),
    ]
    assert answer.rejections == []
    assert counted(metrics, TestOutcome.DELIVERED) == 2


async def test_one_device_only_when_the_command_names_it() -> None:
    apns, fcm = ScriptedSender(Provider.APNS), ScriptedSender(Provider.FCM)
    test, _ = pusher(apns, fcm)
    answer = await test.answer(directory(IOS, ANDROID), TestPushRequested("cmd-1", "agent-1", "android"))
    assert [result.device_id for result in answer.devices] == ["android"]
    assert apns.sent == []


async def test_an_unknown_agent_or_device_gets_an_answer_without_devices() -> None:
    fcm = ScriptedSender(Provider.FCM)
    test, metrics = pusher(fcm)
    assert (await test.answer(directory(ANDROID), TestPushRequested("cmd-1", "agent-9"))).devices == []
    assert (
        await test.answer(directory(ANDROID), TestPushRequested("cmd-2", "agent-1", "gone"))
    ).devices == []
    assert fcm.sent == []
    assert sum(counted(metrics, outcome) for outcome in TestOutcome) == 0


async def test_a_token_the_provider_rejects_is_answered_with_its_reason_and_reported_dead() -> None:
    fcm = ScriptedSender(Provider.FCM, {"fcm-token": [PushOutcome(OutcomeKind.TOKEN_DEAD, "UNREGISTERED")]})
    test, metrics = pusher(fcm)
    answer = await test.answer(directory(ANDROID), TestPushRequested("cmd-1", "agent-1"))
    assert answer.devices == [
        DeviceTestResult("android", Provider.FCM, TestOutcome.TOKEN_REJECTED, "UNREGISTERED")
    ]
    ((rejection, token),) = answer.rejections
    assert (rejection.agent_id, rejection.device_id, rejection.reason) == (
        "agent-1",
        "android",
        "UNREGISTERED",
    )
    assert (token, rejection.token_fingerprint) == ("fcm-token", token_fingerprint("fcm-token"))
    assert counted(metrics, TestOutcome.TOKEN_REJECTED) == 1


async def test_a_token_known_dead_is_not_pushed_nor_reported_again() -> None:
    fcm = ScriptedSender(Provider.FCM)
    agents = directory(ANDROID)
    agents.mark_token_dead("agent-1", "android", "fcm-token")
    test, _ = pusher(fcm)
    answer = await test.answer(agents, TestPushRequested("cmd-1", "agent-1"))
    assert answer.devices == [DeviceTestResult("android", Provider.FCM, TestOutcome.TOKEN_REJECTED)]
    assert answer.rejections == []
    assert fcm.sent == []


async def test_a_provider_without_credentials_is_not_configured() -> None:
    test, metrics = pusher(ScriptedSender(Provider.FCM))
    answer = await test.answer(directory(IOS, ANDROID), TestPushRequested("cmd-1", "agent-1"))
    assert [(r.device_id, r.outcome) for r in answer.devices] == [
        ("ios", TestOutcome.NOT_CONFIGURED),
        ("android", TestOutcome.DELIVERED),
    ]
    assert counted(metrics, TestOutcome.NOT_CONFIGURED) == 1


async def test_transient_failures_are_retried_then_answered_failed_with_the_reason() -> None:
    busy = PushOutcome(OutcomeKind.RETRY_LATER, "UNAVAILABLE")
    fcm = ScriptedSender(Provider.FCM, {"fcm-token": [busy, busy, busy, busy]})
    apns = ScriptedSender(
        Provider.APNS, {"apns-token": [PushOutcome(OutcomeKind.RETRY_LATER, "TooManyRequests")]}
    )
    test, metrics = pusher(apns, fcm)
    answer = await test.answer(directory(IOS, ANDROID), TestPushRequested("cmd-1", "agent-1"))
    assert answer.devices == [
        DeviceTestResult("ios", Provider.APNS, TestOutcome.DELIVERED),
        DeviceTestResult("android", Provider.FCM, TestOutcome.FAILED, "UNAVAILABLE"),
    ]
    assert (len(apns.sent), len(fcm.sent)) == (2, FAST_RETRY.max_attempts)
    assert counted(metrics, TestOutcome.FAILED) == 1


async def test_a_request_bug_is_failed_at_once() -> None:
    apns = ScriptedSender(Provider.APNS, {"apns-token": [PushOutcome(OutcomeKind.REQUEST_BUG, "BadTopic")]})
    test, _ = pusher(apns)
    answer = await test.answer(directory(IOS), TestPushRequested("cmd-1", "agent-1"))
    assert answer.devices == [DeviceTestResult("ios", Provider.APNS, TestOutcome.FAILED, "BadTopic")]
    assert len(apns.sent) == 1


def test_the_test_alert_is_visible_and_expires_soon() -> None:
    push = build_test_alert(IOS, "cmd-1", 1_000)
    assert push.kind is PushKind.TEST_ALERT
    assert push.title and push.body
    assert push.apns_environment is IOS.apns_environment
    assert 1_000 < push.expires_at_ms <= 1_000 + 600_000
