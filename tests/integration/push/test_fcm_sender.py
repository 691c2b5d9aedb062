"""FcmSender driving firebase-admin for real against the FCM fake: OAuth2, v1 send, faults, timeouts."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest
from firebase_admin import messaging
from structlog.testing import capture_logs

from devtools.credentials import GeneratedCredentials, generate_credentials
from devtools.fakes.fcm import MAX_PAYLOAD_BYTES, FcmFake, FcmFault, TokenFault, payload_size
from service.domain.push import LocalizedText, OutcomeKind, Push, PushKind, PushOutcome
from service.errors import PushConfigurationError
from service.push import fcm
from service.push.fcm import FCM_ENDPOINT, FcmSender
from service.push.fcm_payload import FcmStyle, encode_body
from service.push.fcm_token import AccessToken
from service.push.limits import ELLIPSIS, collapse_id_for
from tests import pushes
from tests.clocks import T0_MS, ManualClock
from tests.integration.kafka_helpers import eventually

PROJECT = "livechat-notifier-test"
NOW_MS = T0_MS

MakeSender = Callable[..., Awaitable[FcmSender]]


def fcm_push(kind: PushKind = PushKind.HANDOFF_REQUESTED, **overrides: Any) -> Push:
    """The shared factory's push, with what these tests assert on the wire (a 30 s TTL)."""
    return pushes.fcm_push(
        kind,
        **{
            "token": "token-1",
            "expires_at_ms": NOW_MS + 30_400,
            "data": {"chat_id": "chat-42"},
            "body": "Someone asks for a human",
            **overrides,
        },
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def fcm_fake() -> AsyncIterator[FcmFake]:
    async with FcmFake(project_id=PROJECT) as fake:
        yield fake


@pytest.fixture
def credentials(tmp_path: Path, fcm_fake: FcmFake) -> GeneratedCredentials:
    generated = generate_credentials(tmp_path, fcm_token_uri=fcm_fake.token_uri, fcm_project_id=PROJECT)
    fcm_fake.trust_service_account(generated.fcm_service_account)
    return generated


@pytest.fixture
async def make_sender(fcm_fake: FcmFake, credentials: GeneratedCredentials) -> AsyncIterator[MakeSender]:
    senders: list[FcmSender] = []

    async def make(*, endpoint: str | None = None, timeout_s: float = 5.0, **kwargs: Any) -> FcmSender:
        sender = await FcmSender.create(
            service_account_file=kwargs.pop("service_account_file", credentials.fcm_service_account),
            clock=ManualClock(),
            endpoint=endpoint or fcm_fake.url,
            timeout_s=timeout_s,
            **kwargs,
        )
        senders.append(sender)
        return sender

    yield make
    for sender in senders:
        await sender.close()


@pytest.fixture
async def sender(make_sender: MakeSender) -> FcmSender:
    return await make_sender()


async def test_handoff_request_arrives_with_notification_collapse_key_ttl_and_priority(
    sender: FcmSender, fcm_fake: FcmFake
) -> None:
    outcome = await sender.send(fcm_push())

    assert outcome == PushOutcome(OutcomeKind.DELIVERED)
    [received] = await fcm_fake.messages.wait_for(lambda messages: len(messages) == 1, timeout=5)
    assert received.project == PROJECT
    assert received.message == {
        "token": "token-1",
        "notification": {"title": "A visitor is waiting", "body": "Someone asks for a human"},
        "data": {"chat_id": "chat-42"},
        "android": {
            "collapse_key": "chat-42",
            "priority": "high",
            "ttl": "30s",
            "notification": {
                "tag": "chat-42",
                "channel_id": "live_chat_requests",
                "notification_priority": "PRIORITY_MAX",
            },
        },
    }


async def test_handoff_closed_arrives_as_a_replacing_notification_in_the_updates_channel(
    sender: FcmSender, fcm_fake: FcmFake
) -> None:
    data = {"chat_id": "chat-42", "outcome": "accepted"}
    push = fcm_push(kind=PushKind.HANDOFF_CLOSED, title=None, body="Taken by an agent", data=data)
    outcome = await sender.send(push)

    assert outcome.kind is OutcomeKind.DELIVERED
    [received] = fcm_fake.messages.items
    assert received.message["notification"] == {"body": "Taken by an agent"}
    assert received.message["data"] == data
    assert received.message["android"]["notification"] == {
        "tag": "chat-42",
        "channel_id": "live_chat_updates",
        "notification_priority": "PRIORITY_LOW",
    }


async def test_handoff_closed_arrives_data_only_with_the_same_collapse_key_when_so_configured(
    make_sender: MakeSender, fcm_fake: FcmFake
) -> None:
    sender = await make_sender(style=FcmStyle(closing_update="data"))
    outcome = await sender.send(fcm_push(kind=PushKind.HANDOFF_CLOSED, title=None, body=None))

    assert outcome.kind is OutcomeKind.DELIVERED
    [received] = fcm_fake.messages.items
    assert "notification" not in received.message
    assert received.message["android"] == {"collapse_key": "chat-42", "priority": "high", "ttl": "30s"}


@pytest.mark.parametrize(
    "android_notification",
    [
        {"tag": "chat-42"},
        {"tag": "chat-42", "channel_id": ""},
        {"tag": "chat-42", "channel_id": "live_chat_requests", "notification_priority": "PRIORITY_URGENT"},
        {"tag": "chat-42", "channel_id": "live_chat_requests", "notification_priority": "max"},
        {"channel_id": "live_chat_requests", "visibility": "private"},  # the SDK's spelling, not FCM's
        {"channel_id": "live_chat_requests", "visibility": "HIDDEN"},
        {"channel_id": "live_chat_requests", "body_loc_args": ["Ada"]},  # args without their key
        {"channel_id": "live_chat_requests", "title_loc_key": "", "title_loc_args": ["Alpine Tours"]},
        {"channel_id": "live_chat_requests", "title_loc_key": "k", "title_loc_args": "Alpine Tours"},
        {"channel_id": "live_chat_requests", "body_loc_key": "k", "body_loc_args": ["Ada", 7]},
        {"channel_id": "live_chat_requests", "body_loc_key": 7},
        {"channel_id": "live_chat_requests", "title_loc_key": ["k"]},
    ],
)
async def test_the_fake_refuses_a_bad_channel_priority_visibility_or_loc_field(
    sender: FcmSender,
    fcm_fake: FcmFake,
    monkeypatch: pytest.MonkeyPatch,
    android_notification: dict[str, Any],
) -> None:
    def with_android_notification(message: messaging.Message) -> bytes:
        body = encode_body(message)
        body["message"]["android"]["notification"] = android_notification
        return msgspec.json.encode(body)

    monkeypatch.setattr(fcm, "body_bytes", with_android_notification)

    outcome = await sender.send(fcm_push())

    assert outcome == PushOutcome(OutcomeKind.REQUEST_BUG, "INVALID_ARGUMENT")
    assert fcm_fake.messages.items == []


async def test_the_fake_refuses_a_message_over_4096_bytes_as_fcm_does(
    sender: FcmSender, fcm_fake: FcmFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the sender posted before it kept to FCM's limit: firebase-admin's encoding, uncut.
    monkeypatch.setattr(fcm, "body_bytes", lambda message: msgspec.json.encode(encode_body(message)))

    outcome = await sender.send(fcm_push(body="😀" * 1000))

    assert outcome == PushOutcome(OutcomeKind.REQUEST_BUG, "INVALID_ARGUMENT")
    assert fcm_fake.attempts.items == [] and fcm_fake.messages.items == []


async def test_loc_keys_and_a_private_visibility_arrive_as_fcm_takes_them(
    sender: FcmSender, fcm_fake: FcmFake
) -> None:
    push = fcm_push(
        title_loc=LocalizedText("livechat_alert_title", ("Alpine Tours",)),
        body_loc=LocalizedText("livechat_alert_body", ("Ada",)),
        public_title="Live chat request",
    )

    assert await sender.send(push) == PushOutcome(OutcomeKind.DELIVERED)
    [received] = fcm_fake.messages.items
    assert received.message["android"]["notification"] == {
        "tag": "chat-42",
        "channel_id": "live_chat_requests",
        "notification_priority": "PRIORITY_MAX",
        "visibility": "PRIVATE",
        "title_loc_key": "livechat_alert_title",
        "title_loc_args": ["Alpine Tours"],
        "body_loc_key": "livechat_alert_body",
        "body_loc_args": ["Ada"],
    }
    assert received.message["data"]["public_title"] == "Live chat request"


async def test_loc_args_count_towards_4096_bytes_uncut_refused_cut_accepted(
    sender: FcmSender, fcm_fake: FcmFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    visitor = "😀" * 700  # the body alone fits; with the same name as a loc arg it does not
    push = fcm_push(body=f"{visitor} is waiting", body_loc=LocalizedText("livechat_alert_body", (visitor,)))

    assert await sender.send(push) == PushOutcome(OutcomeKind.DELIVERED)
    [received] = fcm_fake.messages.items
    assert MAX_PAYLOAD_BYTES - 8 <= payload_size(received.message) <= MAX_PAYLOAD_BYTES
    assert received.message["android"]["notification"]["body_loc_args"][0].endswith(ELLIPSIS)

    monkeypatch.setattr(fcm, "body_bytes", lambda message: msgspec.json.encode(encode_body(message)))
    uncut = await sender.send(push)
    assert uncut == PushOutcome(OutcomeKind.REQUEST_BUG, "INVALID_ARGUMENT")
    assert len(fcm_fake.messages.items) == 1


async def test_a_message_just_within_4096_bytes_passes_the_fake(sender: FcmSender, fcm_fake: FcmFake) -> None:
    push = fcm_push(body="😀" * 1000)  # cut by the sender to the limit, not below it by much

    assert await sender.send(push) == PushOutcome(OutcomeKind.DELIVERED)
    [received] = fcm_fake.messages.items
    assert MAX_PAYLOAD_BYTES - 4 <= payload_size(received.message) <= MAX_PAYLOAD_BYTES
    assert received.message["notification"]["body"].endswith(ELLIPSIS)


async def test_a_long_chat_id_is_sent_with_its_derived_collapse_key_and_tag(
    sender: FcmSender, fcm_fake: FcmFake
) -> None:
    chat_id = "livechat:" + "c" * 120

    assert await sender.send(fcm_push(collapse_id=chat_id)) == PushOutcome(OutcomeKind.DELIVERED)
    [received] = fcm_fake.messages.items
    android = received.message["android"]
    assert android["collapse_key"] == android["notification"]["tag"] == collapse_id_for(chat_id)


async def test_a_data_message_too_big_for_fcm_is_a_request_bug_without_a_request(
    sender: FcmSender, fcm_fake: FcmFake
) -> None:
    push = fcm_push(
        kind=PushKind.HANDOFF_CLOSED, title=None, body="The visitor left", data={"blob": "x" * 4100}
    )

    assert await sender.send(push) == PushOutcome(OutcomeKind.REQUEST_BUG, "payload_too_large")
    assert fcm_fake.arrivals.items == []


async def test_a_push_past_its_deadline_goes_out_with_ttl_zero(sender: FcmSender, fcm_fake: FcmFake) -> None:
    await sender.send(fcm_push(expires_at_ms=NOW_MS - 5_000))

    assert fcm_fake.messages.items[0].message["android"]["ttl"] == "0s"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (FcmFault("UNREGISTERED"), PushOutcome(OutcomeKind.TOKEN_DEAD, "UNREGISTERED")),
        (FcmFault("SENDER_ID_MISMATCH"), PushOutcome(OutcomeKind.TOKEN_DEAD, "SENDER_ID_MISMATCH")),
        (FcmFault("INVALID_ARGUMENT"), PushOutcome(OutcomeKind.REQUEST_BUG, "INVALID_ARGUMENT")),
        (FcmFault("THIRD_PARTY_AUTH_ERROR"), PushOutcome(OutcomeKind.REQUEST_BUG, "THIRD_PARTY_AUTH_ERROR")),
        (
            FcmFault("QUOTA_EXCEEDED", retry_after="30"),
            PushOutcome(OutcomeKind.RETRY_LATER, "QUOTA_EXCEEDED", 30.0),
        ),
        (FcmFault("UNAVAILABLE", retry_after="5"), PushOutcome(OutcomeKind.RETRY_LATER, "UNAVAILABLE", 5.0)),
        (FcmFault("INTERNAL"), PushOutcome(OutcomeKind.RETRY_LATER, "INTERNAL")),
        (FcmFault(http_status=502), PushOutcome(OutcomeKind.RETRY_LATER, "UNKNOWN")),
    ],
)
async def test_each_fcm_error_maps_to_its_outcome_after_exactly_one_attempt(
    sender: FcmSender, fcm_fake: FcmFake, fault: FcmFault, expected: PushOutcome
) -> None:
    fcm_fake.set_fault("bad-token", fault)

    with capture_logs() as logs:
        outcome = await sender.send(fcm_push(token="bad-token"))

    assert outcome == expected
    # The sender classifies; the fan-out logs each outcome once (push_outcomes.py).
    assert [line for line in logs if line["event"].startswith("push_")] == []
    # firebase-admin would retry 500/503 four times by itself; the sender leaves retries to its caller.
    assert [attempt.token for attempt in fcm_fake.attempts.items] == ["bad-token"]
    assert fcm_fake.messages.items == []


async def test_other_tokens_are_unaffected_by_a_token_fault(sender: FcmSender, fcm_fake: FcmFake) -> None:
    fcm_fake.set_fault("dead", FcmFault("UNREGISTERED"))

    outcomes = await asyncio.gather(sender.send(fcm_push(token="dead")), sender.send(fcm_push(token="alive")))

    assert [o.kind for o in outcomes] == [OutcomeKind.TOKEN_DEAD, OutcomeKind.DELIVERED]


async def test_an_outage_is_retry_later_for_everyone_until_it_ends(
    sender: FcmSender, fcm_fake: FcmFake
) -> None:
    fcm_fake.set_outage(FcmFault("UNAVAILABLE", retry_after="120"))
    during = await asyncio.gather(*(sender.send(fcm_push(token=f"t{i}")) for i in range(5)))
    fcm_fake.set_outage(None)
    after = await sender.send(fcm_push(token="t0"))

    assert set(during) == {PushOutcome(OutcomeKind.RETRY_LATER, "UNAVAILABLE", 120.0)}
    assert after.kind is OutcomeKind.DELIVERED


async def test_one_token_fetch_serves_many_concurrent_sends(
    make_sender: MakeSender, fcm_fake: FcmFake
) -> None:
    fcm_fake.latency_s = 0.02
    sender = await make_sender()

    outcomes = await asyncio.gather(*(sender.send(fcm_push(token=f"t{i}")) for i in range(60)))
    outcomes += [await sender.send(fcm_push(token="t-later"))]

    assert {o.kind for o in outcomes} == {OutcomeKind.DELIVERED}
    assert len(fcm_fake.messages.items) == 61
    assert fcm_fake.token_fetches == 1


async def test_a_token_near_expiry_is_refreshed_in_the_background(
    make_sender: MakeSender, fcm_fake: FcmFake
) -> None:
    # google-auth calls a token stale 3 min 45 s before it expires: a 200 s token is stale at once.
    fcm_fake.token_lifetime_s = 200
    sender = await make_sender()

    first = await sender.send(fcm_push(token="t1"))  # waits for the token the sender fetches at start
    second = await sender.send(fcm_push(token="t2"))  # stale: sent with it while a new one is fetched

    assert [first.kind, second.kind] == [OutcomeKind.DELIVERED, OutcomeKind.DELIVERED]
    # Each send that finds the token stale starts a background refresh if none is running.
    await fcm_fake.token_requests.wait_for(lambda fetches: len(fetches) >= 2, timeout=5)


async def test_a_rejected_access_token_is_replaced_before_the_next_send(
    sender: FcmSender, fcm_fake: FcmFake
) -> None:
    await sender.send(fcm_push())
    fcm_fake.revoke_tokens()

    rejected = await sender.send(fcm_push())
    recovered = await sender.send(fcm_push())

    assert rejected == PushOutcome(OutcomeKind.REQUEST_BUG, "UNAUTHENTICATED")
    assert recovered.kind is OutcomeKind.DELIVERED
    assert fcm_fake.token_fetches == 2


async def test_a_hanging_fcm_times_out_as_retry_later(make_sender: MakeSender, fcm_fake: FcmFake) -> None:
    sender = await make_sender(timeout_s=0.5)
    await sender.send(fcm_push(token="warm-up"))  # fetches the token outside the measured send
    fcm_fake.set_fault("hangs", FcmFault(hang=True))

    started = time.monotonic()
    outcome = await sender.send(fcm_push(token="hangs"))
    elapsed = time.monotonic() - started

    assert outcome == PushOutcome(OutcomeKind.RETRY_LATER, "timeout")
    assert 0.45 < elapsed < 2.0
    assert (await sender.send(fcm_push(token="fine"))).kind is OutcomeKind.DELIVERED


async def test_waiting_for_a_slow_access_token_never_outlasts_the_send_timeout(
    make_sender: MakeSender, fcm_fake: FcmFake
) -> None:
    fcm_fake.token_latency_s = 2.0
    sender = await make_sender(timeout_s=0.5, token_retry_base_s=0.05)

    started = time.monotonic()
    outcome = await sender.send(fcm_push(token="first"))
    elapsed = time.monotonic() - started

    assert outcome == PushOutcome(OutcomeKind.RETRY_LATER, "timeout")
    assert elapsed < 1.5, f"the token wait held the send for {elapsed:.2f} s (timeout 0.5 s)"
    # The token request itself timed out too; once the endpoint is quick, the retries get one.
    fcm_fake.token_latency_s = 0.0
    await fcm_fake.token_requests.wait_for(lambda issued: len(issued) >= 1, 10.0)
    assert (await sender.send(fcm_push(token="later"))).kind is OutcomeKind.DELIVERED


async def test_only_the_time_the_token_wait_left_bounds_the_request(
    make_sender: MakeSender, fcm_fake: FcmFake
) -> None:
    # Token 0.3 s + send 0.4 s: delivered if the request got a fresh 0.5 s, a timeout if it gets
    # only what the token wait left of the send's 0.5 s.
    fcm_fake.token_latency_s = 0.3
    fcm_fake.latency_s = 0.4
    sender = await make_sender(timeout_s=0.5)

    assert await sender.send(fcm_push()) == PushOutcome(OutcomeKind.RETRY_LATER, "timeout")


async def test_added_latency_delays_but_delivers(sender: FcmSender, fcm_fake: FcmFake) -> None:
    fcm_fake.latency_s = 0.2
    started = time.monotonic()

    outcome = await sender.send(fcm_push())

    assert outcome.kind is OutcomeKind.DELIVERED
    assert time.monotonic() - started >= 0.2


async def test_an_unreachable_fcm_is_retry_later(make_sender: MakeSender) -> None:
    sender = await make_sender(endpoint=f"http://127.0.0.1:{closed_port()}")

    assert await sender.send(fcm_push()) == PushOutcome(OutcomeKind.RETRY_LATER, "connection_error")


async def test_an_unreachable_token_endpoint_is_retry_later(make_sender: MakeSender, tmp_path: Path) -> None:
    elsewhere = generate_credentials(
        tmp_path / "other", fcm_token_uri=f"http://127.0.0.1:{closed_port()}/token"
    )
    sender = await make_sender(service_account_file=elsewhere.fcm_service_account)

    assert await sender.send(fcm_push()) == PushOutcome(OutcomeKind.RETRY_LATER, "token_endpoint_unreachable")


async def test_an_untrusted_service_account_is_a_request_bug(
    make_sender: MakeSender, fcm_fake: FcmFake, tmp_path: Path
) -> None:
    stranger = generate_credentials(
        tmp_path / "stranger", fcm_token_uri=fcm_fake.token_uri, fcm_project_id=PROJECT
    )
    sender = await make_sender(service_account_file=stranger.fcm_service_account)

    assert await sender.send(fcm_push()) == PushOutcome(OutcomeKind.REQUEST_BUG, "token_refresh_rejected")


async def test_senders_keep_their_own_endpoints_and_google_stays_the_default(
    make_sender: MakeSender, fcm_fake: FcmFake, tmp_path: Path
) -> None:
    async with FcmFake(project_id=PROJECT) as other_fake:
        other = generate_credentials(
            tmp_path / "other", fcm_token_uri=other_fake.token_uri, fcm_project_id=PROJECT
        )
        other_fake.trust_service_account(other.fcm_service_account)
        first = await make_sender()
        second = await make_sender(endpoint=other_fake.url, service_account_file=other.fcm_service_account)

        outcomes = [
            await first.send(fcm_push(token="to-first")),
            await second.send(fcm_push(token="to-second")),
        ]

        assert {o.kind for o in outcomes} == {OutcomeKind.DELIVERED}
        assert [m.token for m in fcm_fake.messages.items] == ["to-first"]
        assert [m.token for m in other_fake.messages.items] == ["to-second"]
    assert messaging._MessagingService.FCM_URL == FCM_ENDPOINT + "/v1/projects/{0}/messages:send"


async def test_a_missing_service_account_file_fails_creation(tmp_path: Path) -> None:
    with pytest.raises(PushConfigurationError, match="service account"):
        await FcmSender.create(service_account_file=tmp_path / "missing.json", clock=ManualClock())


class CountedToken(AccessToken):
    """The sender's access token, counting how often the sender closes it."""

    made: ClassVar[list[CountedToken]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed = 0
        CountedToken.made.append(self)

    async def close(self) -> None:
        self.closed += 1
        await super().close()


async def test_close_is_idempotent(make_sender: MakeSender, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fcm, "AccessToken", CountedToken)
    monkeypatch.setattr(CountedToken, "made", [])
    sender = await make_sender()
    await sender.send(fcm_push())

    await sender.close()
    await asyncio.gather(sender.close(), sender.close())  # shutdown and a supervisor, at once

    [token] = CountedToken.made
    assert token.closed == 1, "a second close must not close the sender's resources again"


@pytest.mark.parametrize(
    ("fault", "refused"),
    [
        (
            TokenFault(drop_connection=True),
            PushOutcome(OutcomeKind.RETRY_LATER, "token_endpoint_unreachable"),
        ),
        (TokenFault(400, "invalid_grant"), PushOutcome(OutcomeKind.REQUEST_BUG, "token_refresh_rejected")),
    ],
)
async def test_token_fetch_failures_are_retried_in_the_background_and_surface_in_auth_health(
    make_sender: MakeSender, fcm_fake: FcmFake, fault: TokenFault, refused: PushOutcome
) -> None:
    fcm_fake.set_token_outage(fault)
    sender = await make_sender(token_retry_base_s=0.05)

    # Fetched at start, then retried with backoff without any send asking for it.
    await fcm_fake.token_attempts.wait_for(lambda attempts: len(attempts) >= 3, timeout=5)
    await eventually(lambda: not sender.auth.ok, 5, "credentials reported unhealthy")
    assert sender.auth.failures_total >= 3

    # Sends fail at once with the reason instead of each starting a fetch of their own.
    before = len(fcm_fake.token_attempts.items)
    outcomes = await asyncio.gather(*(sender.send(fcm_push(token=f"t{i}")) for i in range(20)))
    assert set(outcomes) == {refused}
    assert len(fcm_fake.token_attempts.items) - before <= 1, "a fetch per send"
    assert fcm_fake.attempts.items == []

    fcm_fake.set_token_outage(None)
    await fcm_fake.token_requests.wait_for(lambda issued: len(issued) == 1, timeout=10)
    await eventually(lambda: sender.auth.ok, 5, "credentials healthy again")
    assert sender.auth.consecutive_failures == 0
    assert (await sender.send(fcm_push())).kind is OutcomeKind.DELIVERED
    assert fcm_fake.token_fetches == 1
