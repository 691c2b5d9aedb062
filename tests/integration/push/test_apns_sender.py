"""ApnsSender driving aioapns for real against APNs fakes (HTTP/2, TLS, ES256 provider tokens)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aioapns import PushType
from structlog.testing import capture_logs

from devtools.credentials import GeneratedCredentials, generate_credentials
from devtools.fakes.apns import MAX_PAYLOAD_BYTES, ApnsFake, ApnsFault
from service.domain.push import ApnsEnvironment, LocalizedText, OutcomeKind, Push, PushKind, PushOutcome
from service.errors import PushConfigurationError
from service.push import apns
from service.push.apns import ApnsSender
from service.push.apns_payload import ApnsNotification, ApnsStyle
from service.push.limits import ELLIPSIS, collapse_id_for
from tests import pushes
from tests.clocks import ShiftedClock

TOPIC = "com.example.livechat.agent"

MakeSender = Callable[..., Awaitable[ApnsSender]]
MakeFake = Callable[..., Awaitable[ApnsFake]]


def apns_push(kind: PushKind = PushKind.HANDOFF_REQUESTED, **overrides: Any) -> Push:
    """The shared factory's push, for production and expiring a minute after the real clock's now
    (the sender computes the TTL from it)."""
    return pushes.apns_push(
        kind,
        **{
            "token": "a0",
            "expires_at_ms": time.time_ns() // 1_000_000 + 60_000,
            "data": {"chat_id": "chat-42"},
            "body": "Someone asks for a human",
            "apns_environment": ApnsEnvironment.PRODUCTION,
            **overrides,
        },
    )


@pytest.fixture
def credentials(tmp_path: Path) -> GeneratedCredentials:
    return generate_credentials(tmp_path, fcm_token_uri="http://127.0.0.1:9/token")


@pytest.fixture
async def make_fake(credentials: GeneratedCredentials) -> AsyncIterator[MakeFake]:
    fakes: list[ApnsFake] = []

    async def make(name: str, **kwargs: Any) -> ApnsFake:
        fake = ApnsFake(credentials, name=name, topic=TOPIC, **kwargs)
        await fake.start()
        fakes.append(fake)
        return fake

    yield make
    for fake in fakes:
        await fake.stop()


@pytest.fixture
async def production(make_fake: MakeFake) -> ApnsFake:
    return await make_fake("production")


@pytest.fixture
async def sandbox(make_fake: MakeFake) -> ApnsFake:
    return await make_fake("sandbox")


@pytest.fixture
async def make_sender(
    credentials: GeneratedCredentials, production: ApnsFake, sandbox: ApnsFake
) -> AsyncIterator[MakeSender]:
    senders: list[ApnsSender] = []

    async def make(**overrides: Any) -> ApnsSender:
        settings: dict[str, Any] = {
            "key_file": credentials.apns_key,
            "key_id": credentials.apns_key_id,
            "team_id": credentials.apns_team_id,
            "topic": TOPIC,
            "production_url": production.url,
            "sandbox_url": sandbox.url,
            "extra_ca_file": credentials.ca_cert,
            "timeout_s": 5.0,
            "max_connection_attempts": 1,
        }
        settings.update(overrides)
        sender = await ApnsSender.create(**settings)
        senders.append(sender)
        return sender

    yield make
    for sender in senders:
        await sender.close()


@pytest.fixture
async def sender(make_sender: MakeSender) -> ApnsSender:
    return await make_sender()


async def test_handoff_request_arrives_as_an_alert_with_collapse_id_and_expiration(
    sender: ApnsSender, production: ApnsFake, sandbox: ApnsFake
) -> None:
    push = apns_push(token="a1")

    outcome = await sender.send(push)

    assert outcome == PushOutcome(OutcomeKind.DELIVERED)
    [received] = await production.notifications.wait_for(lambda items: len(items) == 1, timeout=5)
    assert received.fake == "production"
    assert received.token == "a1"
    assert received.headers["apns-topic"] == TOPIC
    assert received.headers["apns-push-type"] == "alert"
    assert received.headers["apns-priority"] == "10"
    assert received.collapse_id == "chat-42"
    assert received.expiration in {push.expires_at_ms // 1000 - 1, push.expires_at_ms // 1000}
    assert received.payload == {
        "aps": {
            "alert": {"title": "A visitor is waiting", "body": "Someone asks for a human"},
            "sound": "default",
            "interruption-level": "time-sensitive",
        },
        "chat_id": "chat-42",
    }
    assert sandbox.notifications.items == []


async def test_handoff_closed_arrives_as_a_passive_alert_stating_the_outcome(
    sender: ApnsSender, production: ApnsFake
) -> None:
    data = {"chat_id": "chat-42", "site_id": "site-1", "outcome": "missed"}
    push = apns_push(
        PushKind.HANDOFF_CLOSED, token="a2", title=None, body="Missed: nobody answered in time", data=data
    )

    outcome = await sender.send(push)

    assert outcome.kind is OutcomeKind.DELIVERED
    [received] = production.notifications.items
    assert received.headers["apns-push-type"] == "alert"
    assert received.headers["apns-priority"] == "5"
    assert received.collapse_id == "chat-42"
    assert received.payload == {
        "aps": {
            "alert": {"body": "Missed: nobody answered in time"},
            "interruption-level": "passive",
            "content-available": 1,
            "thread-id": "site-1",
        },
        **data,
    }


async def test_handoff_closed_arrives_as_a_background_push_when_so_configured(
    make_sender: MakeSender, production: ApnsFake
) -> None:
    sender = await make_sender(style=ApnsStyle(closing_update="background"))
    push = apns_push(PushKind.HANDOFF_CLOSED, token="a2", title=None, body=None)

    outcome = await sender.send(push)

    assert outcome.kind is OutcomeKind.DELIVERED
    [received] = production.notifications.items
    assert received.headers["apns-push-type"] == "background"
    assert received.headers["apns-priority"] == "5"
    assert received.collapse_id == "chat-42"
    assert received.payload == {"aps": {"content-available": 1}, "chat_id": "chat-42"}


@pytest.mark.parametrize(
    ("notification", "reason"),
    [
        (ApnsNotification({"aps": {"content-available": 1}}, PushType.ALERT, 10, "c", 0), "InvalidPushType"),
        (
            ApnsNotification(
                {"aps": {"alert": "hi", "content-available": 1}}, PushType.BACKGROUND, 5, "c", 0
            ),
            "InvalidPushType",
        ),
        (
            ApnsNotification(
                {"aps": {"sound": "default", "content-available": 1}}, PushType.BACKGROUND, 5, "c", 0
            ),
            "InvalidPushType",
        ),
        (ApnsNotification({"aps": {"content-available": 1}}, PushType.BACKGROUND, 1, "c", 0), "BadPriority"),
        (
            ApnsNotification(
                {"aps": {"alert": "hi", "interruption-level": "timeSensitive"}}, PushType.ALERT, 10, "c", 0
            ),
            "BadPayload",
        ),
        *(
            (ApnsNotification({"aps": {"alert": alert}}, PushType.ALERT, 10, "c", 0), "BadPayload")
            for alert in (
                {"body": "hi", "loc-key": 7},
                {"body": "hi", "title-loc-key": ["K"]},
                {"body": "hi", "loc-key": "K", "loc-args": "Ada"},
                {"body": "hi", "title-loc-key": "K", "title-loc-args": ["Alpine Tours", 3]},
                {"body": 42},
                ["hi"],
            )
        ),
    ],
)
async def test_the_fake_refuses_a_push_type_interruption_level_or_alert_apple_refuses(
    sender: ApnsSender,
    production: ApnsFake,
    monkeypatch: pytest.MonkeyPatch,
    notification: ApnsNotification,
    reason: str,
) -> None:
    monkeypatch.setattr(apns, "build_notification", lambda _push, _style: notification)

    outcome = await sender.send(apns_push(token="a3"))

    assert outcome == PushOutcome(OutcomeKind.REQUEST_BUG, reason)
    assert production.notifications.items == []


async def test_sandbox_pushes_go_to_the_sandbox_endpoint(
    sender: ApnsSender, production: ApnsFake, sandbox: ApnsFake
) -> None:
    outcomes = await asyncio.gather(
        sender.send(apns_push(token="b1", apns_environment=ApnsEnvironment.SANDBOX)),
        sender.send(apns_push(token="b2", apns_environment=ApnsEnvironment.PRODUCTION)),
    )

    assert {o.kind for o in outcomes} == {OutcomeKind.DELIVERED}
    assert [(n.fake, n.token) for n in sandbox.notifications.items] == [("sandbox", "b1")]
    assert [(n.fake, n.token) for n in production.notifications.items] == [("production", "b2")]


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (ApnsFault(410, "Unregistered"), PushOutcome(OutcomeKind.TOKEN_DEAD, "Unregistered")),
        (ApnsFault(410, "ExpiredToken"), PushOutcome(OutcomeKind.TOKEN_DEAD, "ExpiredToken")),
        (ApnsFault(400, "BadDeviceToken"), PushOutcome(OutcomeKind.TOKEN_DEAD, "BadDeviceToken")),
        (
            ApnsFault(400, "DeviceTokenNotForTopic"),
            PushOutcome(OutcomeKind.TOKEN_DEAD, "DeviceTokenNotForTopic"),
        ),
        (ApnsFault(429, "TooManyRequests"), PushOutcome(OutcomeKind.RETRY_LATER, "TooManyRequests")),
        (ApnsFault(500, "InternalServerError"), PushOutcome(OutcomeKind.RETRY_LATER, "InternalServerError")),
        (ApnsFault(503, "ServiceUnavailable"), PushOutcome(OutcomeKind.RETRY_LATER, "ServiceUnavailable")),
        (ApnsFault(400, "BadPriority"), PushOutcome(OutcomeKind.REQUEST_BUG, "BadPriority")),
        (
            ApnsFault(403, "ExpiredProviderToken"),
            PushOutcome(OutcomeKind.REQUEST_BUG, "ExpiredProviderToken"),
        ),
        (ApnsFault(413, "PayloadTooLarge"), PushOutcome(OutcomeKind.REQUEST_BUG, "PayloadTooLarge")),
    ],
)
async def test_each_apns_answer_maps_to_its_outcome(
    sender: ApnsSender, production: ApnsFake, sandbox: ApnsFake, fault: ApnsFault, expected: PushOutcome
) -> None:
    # In both environments: a BadDeviceToken is asked of the other one too (see the tests below).
    production.set_fault("c0", fault)
    sandbox.set_fault("c0", fault)

    with capture_logs() as logs:
        assert await sender.send(apns_push(token="c0")) == expected
        assert await sender.send(apns_push(token="c1")) == PushOutcome(OutcomeKind.DELIVERED)

    # The sender classifies; the fan-out logs each outcome once (push_outcomes.py).
    assert [line for line in logs if line["event"].startswith("push_")] == []


@pytest.mark.parametrize(
    ("collapse_id", "payload", "reason"),
    [
        ("x" * 65, {"aps": {"alert": {"body": "hi"}}}, "BadCollapseId"),
        ("chat-42", {"aps": {"alert": {"body": "x" * 4100}}}, "PayloadTooLarge"),
        (
            "chat-42",
            {"aps": {"alert": {"body": "hi", "loc-key": "K", "loc-args": ["x" * 2100, "y" * 2000]}}},
            "PayloadTooLarge",
        ),
    ],
)
async def test_the_fake_refuses_what_apple_refuses(
    sender: ApnsSender,
    production: ApnsFake,
    monkeypatch: pytest.MonkeyPatch,
    collapse_id: str,
    payload: dict[str, Any],
    reason: str,
) -> None:
    # What the sender sent before it kept to Apple's limits, sent through aioapns for real.
    def unlimited(push: Push, _style: ApnsStyle) -> ApnsNotification:
        return ApnsNotification(payload, PushType.ALERT, 10, collapse_id, push.expires_at_ms // 1000)

    monkeypatch.setattr(apns, "build_notification", unlimited)

    assert await sender.send(apns_push(token="d0")) == PushOutcome(OutcomeKind.REQUEST_BUG, reason)
    assert production.requests.items == ["d0"]


async def test_loc_keys_arrive_and_their_args_are_cut_with_the_texts_to_fit(
    sender: ApnsSender, production: ApnsFake
) -> None:
    visitor = "😀" * 700  # the body alone fits; with the same name as a loc arg it does not
    push = apns_push(
        token="d2",
        body=f"{visitor} is waiting",
        title_loc=LocalizedText("LIVECHAT_ALERT_TITLE", ("Alpine Tours",)),
        body_loc=LocalizedText("LIVECHAT_ALERT_BODY", (visitor,)),
    )

    assert await sender.send(push) == PushOutcome(OutcomeKind.DELIVERED)
    [received] = production.notifications.items
    alert = received.payload["aps"]["alert"]
    assert (alert["title-loc-key"], alert["title-loc-args"]) == ("LIVECHAT_ALERT_TITLE", ["Alpine Tours"])
    assert alert["loc-key"] == "LIVECHAT_ALERT_BODY"
    assert alert["loc-args"][0].endswith(ELLIPSIS) and alert["body"].endswith(ELLIPSIS)
    wire = len(json.dumps(received.payload, ensure_ascii=False).encode())
    assert MAX_PAYLOAD_BYTES - 8 <= wire <= MAX_PAYLOAD_BYTES


async def test_a_long_chat_id_is_sent_with_its_derived_collapse_id(
    sender: ApnsSender, production: ApnsFake
) -> None:
    chat_id = "x" * 65

    assert await sender.send(apns_push(token="d1", collapse_id=chat_id)) == PushOutcome(OutcomeKind.DELIVERED)
    [received] = production.notifications.items
    assert received.collapse_id == collapse_id_for(chat_id)


async def test_huge_texts_are_cut_to_fit_and_delivered(sender: ApnsSender, production: ApnsFake) -> None:
    push = apns_push(token="d2", title="Live chat request · " + "観" * 200, body="😀" * 1000)

    assert await sender.send(push) == PushOutcome(OutcomeKind.DELIVERED)
    [received] = production.notifications.items
    assert received.payload["aps"]["alert"]["title"] == push.title
    assert received.payload["aps"]["alert"]["body"].endswith(ELLIPSIS)


async def test_data_too_big_for_apple_is_a_request_bug_without_a_request(
    sender: ApnsSender, production: ApnsFake
) -> None:
    outcome = await sender.send(apns_push(token="d3", data={"blob": "x" * 4100}))

    assert outcome == PushOutcome(OutcomeKind.REQUEST_BUG, "payload_too_large")
    assert production.requests.items == []


async def test_a_wrong_topic_or_key_id_is_a_request_bug(make_sender: MakeSender) -> None:
    wrong_topic = await make_sender(topic="com.example.other")
    wrong_key_id = await make_sender(key_id="ABCDEFGHIJ")

    assert await wrong_topic.send(apns_push()) == PushOutcome(OutcomeKind.REQUEST_BUG, "TopicDisallowed")
    assert await wrong_key_id.send(apns_push()) == PushOutcome(
        OutcomeKind.REQUEST_BUG, "InvalidProviderToken"
    )


async def test_a_hang_times_out_resets_the_stream_and_frees_its_slot(
    make_fake: MakeFake, make_sender: MakeSender, sandbox: ApnsFake
) -> None:
    # One stream per connection and one connection: a slot leaked by the hung request would
    # block every later push on this sender.
    narrow = await make_fake("narrow", max_concurrent_streams=1)
    sender = await make_sender(production_url=narrow.url, timeout_s=0.5, max_connections=1)
    assert (await sender.send(apns_push(token="e0"))).kind is OutcomeKind.DELIVERED
    narrow.set_fault("e1", ApnsFault(hang=True))

    started = time.monotonic()
    outcome = await sender.send(apns_push(token="e1"))

    assert outcome == PushOutcome(OutcomeKind.RETRY_LATER, "timeout")
    assert 0.45 < time.monotonic() - started < 2.0
    await narrow.resets.wait_for(lambda resets: len(resets) == 1, timeout=5)
    assert (await sender.send(apns_push(token="e2"))).kind is OutcomeKind.DELIVERED
    assert narrow.connections_accepted == 1


async def test_a_dropped_connection_is_retry_later_and_the_next_push_reconnects(
    sender: ApnsSender, production: ApnsFake
) -> None:
    production.set_fault("f0", ApnsFault(drop_connection=True))

    dropped = await sender.send(apns_push(token="f0"))
    after = await sender.send(apns_push(token="f1"))

    assert dropped == PushOutcome(OutcomeKind.RETRY_LATER, "connection_error")
    assert after.kind is OutcomeKind.DELIVERED
    assert production.connections_accepted == 2


async def test_an_outage_is_retry_later_until_it_ends(sender: ApnsSender, production: ApnsFake) -> None:
    production.set_outage(ApnsFault(503, "ServiceUnavailable"))
    during = await asyncio.gather(*(sender.send(apns_push(token=f"{i:02x}")) for i in range(5)))
    production.set_outage(None)

    assert set(during) == {PushOutcome(OutcomeKind.RETRY_LATER, "ServiceUnavailable")}
    assert (await sender.send(apns_push(token="ff"))).kind is OutcomeKind.DELIVERED


async def test_an_unreachable_endpoint_is_retry_later(make_sender: MakeSender, production: ApnsFake) -> None:
    sender = await make_sender()
    await production.stop()

    assert await sender.send(apns_push()) == PushOutcome(OutcomeKind.RETRY_LATER, "connection_error")


async def test_max_concurrent_streams_is_respected_under_load(
    make_fake: MakeFake, make_sender: MakeSender
) -> None:
    narrow = await make_fake("narrow", max_concurrent_streams=4, latency_s=0.02)
    sender = await make_sender(production_url=narrow.url, max_connections=1)
    await sender.send(apns_push(token="00"))  # the first answer carries the server's SETTINGS

    outcomes = await asyncio.gather(*(sender.send(apns_push(token=f"{i:04x}")) for i in range(40)))

    assert {o.kind for o in outcomes} == {OutcomeKind.DELIVERED}
    assert narrow.peak_streams <= 4
    assert narrow.protocol_errors == 0
    assert narrow.connections_accepted == 1


async def test_thousands_of_error_answers_on_one_connection_keep_flowing(
    sender: ApnsSender, production: ApnsFake
) -> None:
    # Each 410 body takes ~60 bytes of the connection's 64 KiB receive window; unless the client
    # hands credit back, the server can send no more bodies after about 1,100 of them.
    tokens = [f"{i:04x}" for i in range(1_300)]
    for token in tokens:
        production.set_fault(token, ApnsFault(410, "Unregistered"))

    outcomes: list[PushOutcome] = []
    for start in range(0, len(tokens), 100):
        batch = tokens[start : start + 100]
        outcomes += await asyncio.gather(*(sender.send(apns_push(token=t)) for t in batch))

    assert {o.kind for o in outcomes} == {OutcomeKind.TOKEN_DEAD}
    assert production.connections_accepted == 1


async def test_one_provider_token_serves_a_connection(sender: ApnsSender, production: ApnsFake) -> None:
    outcomes = await asyncio.gather(*(sender.send(apns_push(token=f"{i:02x}")) for i in range(50)))

    assert {o.kind for o in outcomes} == {OutcomeKind.DELIVERED}
    assert production.provider_tokens_seen == production.connections_accepted == 1


async def test_unusable_settings_fail_creation(credentials: GeneratedCredentials, tmp_path: Path) -> None:
    rsa_key = tmp_path / "rsa.pem"
    rsa_key.write_text(json.loads(credentials.fcm_service_account.read_text())["private_key"])
    common: dict[str, Any] = {"key_id": "K", "team_id": "T", "topic": TOPIC}

    with pytest.raises(PushConfigurationError, match="not an EC P-256 key"):
        await ApnsSender.create(key_file=rsa_key, **common)
    with pytest.raises(PushConfigurationError, match="APNs settings unusable"):
        await ApnsSender.create(key_file=tmp_path / "missing.p8", **common)
    with pytest.raises(PushConfigurationError, match="APNs settings unusable"):
        await ApnsSender.create(key_file=credentials.apns_key, production_url="http://x", **common)


# -- a token of the other environment ------------------------------------------------------------


async def test_a_production_device_whose_token_is_a_sandbox_token_is_delivered_there_and_flagged(
    sender: ApnsSender, production: ApnsFake, sandbox: ApnsFake
) -> None:
    production.set_fault("5a", ApnsFault(400, "BadDeviceToken"))  # Apple's answer for a sandbox token

    outcome = await sender.send(apns_push(token="5a"))
    again = await sender.send(apns_push(token="5a"))

    expected = PushOutcome(OutcomeKind.DELIVERED, actual_environment=ApnsEnvironment.SANDBOX)
    assert (outcome, again) == (expected, expected), "still a mismatch while the snapshot is wrong"
    assert [n.token for n in sandbox.notifications.items] == ["5a", "5a"]
    assert production.requests.items == ["5a"], "once found in the sandbox, sent straight there"


async def test_a_sandbox_device_whose_token_is_a_production_token_is_delivered_there_and_flagged(
    sender: ApnsSender, production: ApnsFake, sandbox: ApnsFake
) -> None:
    sandbox.set_fault("5b", ApnsFault(400, "BadDeviceToken"))

    outcome = await sender.send(apns_push(token="5b", apns_environment=ApnsEnvironment.SANDBOX))

    assert outcome == PushOutcome(OutcomeKind.DELIVERED, actual_environment=ApnsEnvironment.PRODUCTION)
    assert [n.token for n in production.notifications.items] == ["5b"]


async def test_a_token_unknown_in_both_environments_is_dead(
    sender: ApnsSender, production: ApnsFake, sandbox: ApnsFake
) -> None:
    for fake in (production, sandbox):
        fake.set_fault("5c", ApnsFault(400, "BadDeviceToken"))

    assert await sender.send(apns_push(token="5c")) == PushOutcome(OutcomeKind.TOKEN_DEAD, "BadDeviceToken")
    assert (production.requests.items, sandbox.requests.items) == (["5c"], ["5c"])


async def test_a_bad_device_token_is_not_dropped_while_the_other_environment_cannot_answer(
    sender: ApnsSender, production: ApnsFake, sandbox: ApnsFake
) -> None:
    production.set_fault("5d", ApnsFault(400, "BadDeviceToken"))
    sandbox.set_outage(ApnsFault(503, "ServiceUnavailable"))

    outcome = await sender.send(apns_push(token="5d"))

    assert outcome == PushOutcome(OutcomeKind.RETRY_LATER, "BadDeviceToken;sandbox:ServiceUnavailable")
    sandbox.set_outage(None)
    assert (await sender.send(apns_push(token="5d"))).actual_environment is ApnsEnvironment.SANDBOX


# -- the provider token --------------------------------------------------------------------------


async def test_all_connections_in_both_environments_share_one_provider_token(
    sender: ApnsSender, production: ApnsFake, sandbox: ApnsFake
) -> None:
    # aioapns would sign a new token for every new connection; dropped connections make new ones.
    for token in ("d0", "d1"):
        production.set_fault(token, ApnsFault(drop_connection=True))

    outcomes = [
        await sender.send(apns_push(token="00")),
        await sender.send(apns_push(token="d0")),
        await sender.send(apns_push(token="01")),
        await sender.send(apns_push(token="d1")),
        await sender.send(apns_push(token="02")),
        await sender.send(apns_push(token="ab", apns_environment=ApnsEnvironment.SANDBOX)),
    ]

    assert [o.kind for o in outcomes] == [
        OutcomeKind.DELIVERED,
        OutcomeKind.RETRY_LATER,
        OutcomeKind.DELIVERED,
        OutcomeKind.RETRY_LATER,
        OutcomeKind.DELIVERED,
        OutcomeKind.DELIVERED,
    ]
    assert production.connections_accepted == 3
    assert production.provider_tokens_seen == sandbox.provider_tokens_seen == 1
    assert sender.provider_token.tokens_signed == 1


async def test_the_provider_token_is_re_signed_after_40_minutes_not_before(
    make_sender: MakeSender, production: ApnsFake
) -> None:
    clock = ShiftedClock()
    sender = await make_sender(clock=clock)

    await sender.send(apns_push(token="01"))
    clock.ahead_s = 39 * 60 + 59
    await sender.send(apns_push(token="02"))
    assert production.provider_tokens_seen == 1
    clock.ahead_s = 40 * 60
    outcome = await sender.send(apns_push(token="03"))

    assert outcome.kind is OutcomeKind.DELIVERED, "the fake accepts the re-signed token"
    assert production.provider_tokens_seen == 2
    assert production.connections_accepted == 1, "the same connection signs with the new token"


async def test_provider_token_refusals_make_the_credentials_unhealthy_until_one_works(
    sender: ApnsSender, production: ApnsFake
) -> None:
    production.set_outage(ApnsFault(403, "ExpiredProviderToken"))
    for _ in range(3):
        assert (await sender.send(apns_push(token="07"))).reason == "ExpiredProviderToken"
    assert (sender.auth.ok, sender.auth.consecutive_failures) == (False, 3)

    production.set_outage(None)
    assert (await sender.send(apns_push(token="07"))).kind is OutcomeKind.DELIVERED
    assert (sender.auth.ok, sender.auth.failures_total, sender.auth.consecutive_failures) == (True, 3, 0)
