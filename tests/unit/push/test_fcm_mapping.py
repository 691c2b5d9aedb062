"""FCM mapping: Push -> FCM v1 message, and FCM's errors -> PushOutcome (pure, no network)."""

from __future__ import annotations

import email.utils
import json
import warnings
from dataclasses import replace
from typing import Any

import httpx
import pytest
from firebase_admin import messaging
from google.auth.exceptions import GoogleAuthError, RefreshError, TransportError

from devtools.fakes.fcm import payload_size as fake_payload_size
from service.domain.push import ApnsEnvironment, LocalizedText, OutcomeKind, Provider, PushKind, PushOutcome
from service.push.fcm_payload import (
    MAX_TTL_S,
    FcmStyle,
    body_bytes,
    build_message,
    classify_error,
    encode_body,
    fcm_error_code,
    outcome_of_answer,
    parse_retry_after,
    payload_size,
    ttl_seconds,
)
from service.push.fcm_token import outcome_of_token_error
from service.push.limits import ELLIPSIS, MAX_PAYLOAD_BYTES, PayloadTooLargeError, collapse_id_for
from tests.clocks import T0_MS
from tests.pushes import fcm_push

NOW_MS = T0_MS
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


def encoded(message: messaging.Message) -> dict[str, Any]:
    """The v1 JSON firebase-admin will post for `message`."""
    result: dict[str, Any] = messaging._MessagingService.encode_message(message)
    return result


def error_body(http_status: int, status: str, error_code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": http_status, "message": "m", "status": status}
    if error_code is not None:
        error["details"] = [{"@type": FCM_ERROR, "errorCode": error_code}]
    return {"error": error}


@pytest.mark.parametrize(
    ("expires_in_ms", "ttl"),
    [(45_999, 45), (1_000, 1), (999, 0), (0, 0), (-5_000, 0), (10**12, MAX_TTL_S)],
)
def test_ttl_is_whole_seconds_left_clamped_to_fcm_range(expires_in_ms: int, ttl: int) -> None:
    assert ttl_seconds(NOW_MS + expires_in_ms, NOW_MS) == ttl


def test_handoff_request_is_a_high_priority_notification_in_the_requests_channel_collapsed_per_chat() -> None:
    message = build_message(fcm_push(), NOW_MS)

    assert encoded(message) == {
        "token": "registration-token-1",
        "notification": {"title": "A visitor is waiting", "body": "Alpine Tours: someone asks for a human"},
        "data": {"chat_id": "chat-42", "site_id": "site-1"},
        "android": {
            "collapse_key": "chat-42",
            "priority": "high",
            "ttl": "45s",
            "notification": {
                "tag": "chat-42",
                "channel_id": "live_chat_requests",
                "notification_priority": "PRIORITY_MAX",
            },
        },
    }


def test_the_alerts_channel_comes_from_the_style() -> None:
    message = build_message(fcm_push(), NOW_MS, FcmStyle(channel_id="urgent"))

    assert encoded(message)["android"]["notification"]["channel_id"] == "urgent"


CLOSED_DATA = {"chat_id": "chat-42", "site_id": "site-1", "request_id": "req-1", "outcome": "ended"}


def test_handoff_closed_is_by_default_a_replacing_notification_in_the_quiet_channel() -> None:
    message = build_message(
        fcm_push(PushKind.HANDOFF_CLOSED, title=None, body="The visitor left", data=CLOSED_DATA), NOW_MS
    )

    assert encoded(message) == {
        "token": "registration-token-1",
        "notification": {"body": "The visitor left"},
        "data": CLOSED_DATA,
        "android": {
            "collapse_key": "chat-42",
            "priority": "high",
            "ttl": "45s",
            "notification": {
                "tag": "chat-42",
                "channel_id": "live_chat_updates",
                "notification_priority": "PRIORITY_LOW",
            },
        },
    }


def test_the_closing_channel_comes_from_the_style() -> None:
    push = fcm_push(PushKind.HANDOFF_CLOSED, title=None, data=CLOSED_DATA)
    message = build_message(push, NOW_MS, FcmStyle(closing_channel_id="quiet"))

    assert encoded(message)["android"]["notification"]["channel_id"] == "quiet"


def test_handoff_closed_as_data_is_data_only_with_the_same_collapse_key_and_ttl() -> None:
    push = fcm_push(PushKind.HANDOFF_CLOSED, title=None, body=None, data=CLOSED_DATA)
    message = build_message(push, NOW_MS, FcmStyle(closing_update="data"))

    assert encoded(message) == {
        "token": "registration-token-1",
        "data": CLOSED_DATA,
        "android": {"collapse_key": "chat-42", "priority": "high", "ttl": "45s"},
    }


def test_a_push_past_its_deadline_gets_ttl_zero() -> None:
    message = build_message(fcm_push(expires_at_ms=NOW_MS - 1), NOW_MS)

    assert encoded(message)["android"]["ttl"] == "0s"


def test_a_handoff_request_without_text_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="title or a body"):
        build_message(fcm_push(title=None, body=None), NOW_MS)


def test_an_apns_push_is_refused() -> None:
    with pytest.raises(ValueError, match="not an FCM push"):
        build_message(fcm_push(provider=Provider.APNS, apns_environment=ApnsEnvironment.SANDBOX), NOW_MS)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (error_body(404, "NOT_FOUND", "UNREGISTERED"), "UNREGISTERED"),
        (error_body(503, "UNAVAILABLE"), None),
        ({"error": {"details": [{"@type": "other", "errorCode": "X"}]}}, None),
        ({"error": "flat string"}, None),
        ("not json object", None),
        (None, None),
    ],
)
def test_fcm_error_code_comes_from_the_fcm_error_detail(body: object, code: str | None) -> None:
    assert fcm_error_code(body) == code


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("120", 120.0), (" 3 ", 3.0), ("", None), (None, None), ("soon", None), ("-1", None)],
)
def test_retry_after_in_seconds(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW_MS / 1000) == seconds


def test_retry_after_as_http_date_counts_from_now() -> None:
    in_90_s = email.utils.formatdate(NOW_MS / 1000 + 90, usegmt=True)
    past = email.utils.formatdate(NOW_MS / 1000 - 90, usegmt=True)

    assert parse_retry_after(in_90_s, NOW_MS / 1000) == pytest.approx(90.0)
    assert parse_retry_after(past, NOW_MS / 1000) == 0.0


TOKEN_DEAD, RETRY, BUG = OutcomeKind.TOKEN_DEAD, OutcomeKind.RETRY_LATER, OutcomeKind.REQUEST_BUG


@pytest.mark.parametrize(
    ("http_status", "error_code", "status", "kind", "reason"),
    [
        (404, "UNREGISTERED", "NOT_FOUND", TOKEN_DEAD, "UNREGISTERED"),
        (403, "SENDER_ID_MISMATCH", "PERMISSION_DENIED", TOKEN_DEAD, "SENDER_ID_MISMATCH"),
        (429, "QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED", RETRY, "QUOTA_EXCEEDED"),
        (503, "UNAVAILABLE", "UNAVAILABLE", RETRY, "UNAVAILABLE"),
        (500, "INTERNAL", "INTERNAL", RETRY, "INTERNAL"),
        (503, None, "UNAVAILABLE", RETRY, "UNAVAILABLE"),
        (502, None, None, RETRY, "HTTP_502"),
        (429, None, None, RETRY, "HTTP_429"),
        (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", BUG, "INVALID_ARGUMENT"),
        (401, "THIRD_PARTY_AUTH_ERROR", "UNAUTHENTICATED", BUG, "THIRD_PARTY_AUTH_ERROR"),
        (401, None, "UNAUTHENTICATED", BUG, "UNAUTHENTICATED"),
        (403, None, "PERMISSION_DENIED", BUG, "PERMISSION_DENIED"),
        (404, None, "NOT_FOUND", BUG, "NOT_FOUND"),
        (None, None, None, BUG, "UNKNOWN"),
    ],
)
def test_error_classification(
    http_status: int | None, error_code: str | None, status: str | None, kind: OutcomeKind, reason: str
) -> None:
    outcome = classify_error(http_status=http_status, error_code=error_code, status=status)

    assert (outcome.kind, outcome.reason) == (kind, reason)


def test_retry_after_is_kept_only_for_retryable_errors() -> None:
    retry = classify_error(http_status=429, error_code="QUOTA_EXCEEDED", status=None, retry_after_s=30.0)
    bug = classify_error(http_status=400, error_code="INVALID_ARGUMENT", status=None, retry_after_s=30.0)

    assert retry.retry_after_s == 30.0
    assert bug.retry_after_s is None


def response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers, request=httpx.Request("POST", "https://fcm"))


def test_outcome_of_a_dead_token_answer() -> None:
    body = error_body(404, "NOT_FOUND", "UNREGISTERED")
    assert outcome_of_answer(404, body, None, NOW_MS / 1000) == PushOutcome(TOKEN_DEAD, "UNREGISTERED")


def test_outcome_of_an_unavailable_answer_keeps_retry_after() -> None:
    body = error_body(503, "UNAVAILABLE", "UNAVAILABLE")
    assert outcome_of_answer(503, body, "17", NOW_MS / 1000) == PushOutcome(RETRY, "UNAVAILABLE", 17.0)


def test_outcome_of_success_and_of_an_unparseable_answer() -> None:
    assert outcome_of_answer(200, None, None, NOW_MS / 1000) == PushOutcome(OutcomeKind.DELIVERED)
    assert outcome_of_answer(502, None, None, NOW_MS / 1000) == PushOutcome(RETRY, "HTTP_502")
    assert outcome_of_answer(400, "oops", None, NOW_MS / 1000).kind is OutcomeKind.REQUEST_BUG


def test_the_request_body_is_firebase_admins_encoding() -> None:
    body = encode_body(build_message(fcm_push(), NOW_MS))
    assert set(body) == {"message"}
    assert body["message"]["token"] == fcm_push().token
    assert body["message"]["android"]["collapse_key"] == fcm_push().collapse_id


def test_the_posted_bytes_are_that_encoding_as_json() -> None:
    message = build_message(fcm_push(title="Live chat · Ängelholm", body='say "hi"\n'), NOW_MS)
    assert json.loads(body_bytes(message)) == encode_body(message)


LONG_CHAT_ID = "livechat:visitor-chat:" + "0f3c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b" * 2  # 94 bytes
HUGE_TITLE = "Live chat request · " + "観光" * 100  # the decoder's longest site name, CJK
HUGE_BODY = "😀" * 1000 + " is waiting for an agent. Tap to open Active chats."


def test_a_long_chat_id_gets_the_same_derived_id_as_collapse_key_and_tag_as_on_apns() -> None:
    alert = encoded(build_message(fcm_push(collapse_id=LONG_CHAT_ID), NOW_MS))
    closing_push = fcm_push(PushKind.HANDOFF_CLOSED, collapse_id=LONG_CHAT_ID, title=None)
    closing = encoded(build_message(closing_push, NOW_MS))

    derived = collapse_id_for(LONG_CHAT_ID)
    assert alert["android"]["collapse_key"] == alert["android"]["notification"]["tag"] == derived
    assert closing["android"]["collapse_key"] == derived


def test_a_message_too_big_for_fcm_has_its_texts_cut_to_fit() -> None:
    data = {"chat_id": "c" * 256, "site_id": "s" * 256, "type": "handoff_requested", "open_tab": "active"}
    message = build_message(fcm_push(title=HUGE_TITLE, body=HUGE_BODY, data=data), NOW_MS)

    posted = json.loads(body_bytes(message))["message"]

    assert MAX_PAYLOAD_BYTES - 4 <= payload_size(posted) <= MAX_PAYLOAD_BYTES
    assert fake_payload_size(posted) == payload_size(posted), "the fake measures what the sender does"
    assert posted["notification"]["title"] == HUGE_TITLE, "the shorter text (the site name) stays whole"
    assert posted["notification"]["body"].startswith("😀")
    assert posted["notification"]["body"].endswith(ELLIPSIS)
    assert posted["data"] == data, "data is never cut"
    assert {k: v for k, v in posted.items() if k != "notification"} == {
        k: v for k, v in encoded(message).items() if k != "notification"
    }


def test_a_message_that_fits_is_posted_as_firebase_admin_encodes_it() -> None:
    message = build_message(fcm_push(title="T" * 1000, body="B" * 2000), NOW_MS)
    assert json.loads(body_bytes(message)) == encode_body(message)


def test_a_data_message_too_big_for_fcm_is_refused_before_sending() -> None:
    push = fcm_push(PushKind.HANDOFF_CLOSED, title=None, body=None, data={"blob": "x" * MAX_PAYLOAD_BYTES})
    with pytest.raises(PayloadTooLargeError):
        body_bytes(build_message(push, NOW_MS, FcmStyle(closing_update="data")))


def test_a_closing_notification_needs_the_cores_texts() -> None:
    push = fcm_push(PushKind.HANDOFF_CLOSED, title=None, body=None, data=CLOSED_DATA)
    with pytest.raises(ValueError, match="title or a body"):
        build_message(push, NOW_MS)


def test_a_message_to_a_registration_token_is_built_without_the_fid_deprecation_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        message = build_message(fcm_push(), NOW_MS)
    assert message.token == fcm_push().token
    assert message.fid is None


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        # google-auth's exceptions are untyped.
        (TransportError("refused"), PushOutcome(RETRY, "token_endpoint_unreachable")),  # type: ignore[no-untyped-call]
        (RefreshError("503", retryable=True), PushOutcome(RETRY, "token_refresh_failed")),  # type: ignore[no-untyped-call]
        (RefreshError("invalid_grant"), PushOutcome(BUG, "token_refresh_rejected")),  # type: ignore[no-untyped-call]
    ],
)
def test_outcome_of_a_token_failure(error: GoogleAuthError, outcome: PushOutcome) -> None:
    assert outcome_of_token_error(error) == outcome


# -- #12: loc keys, lock-screen visibility, reminder and test kinds, the core's closing texts --------

TITLE_LOC = LocalizedText("livechat_alert_title", ("Alpine Tours",))
BODY_LOC = LocalizedText("livechat_alert_body", ("Ada",))


def test_an_alert_carries_the_loc_keys_and_args_next_to_the_rendered_texts() -> None:
    message = encoded(build_message(fcm_push(title_loc=TITLE_LOC, body_loc=BODY_LOC), NOW_MS))

    assert message["notification"] == {
        "title": "A visitor is waiting",
        "body": "Alpine Tours: someone asks for a human",
    }
    assert message["android"]["notification"] == {
        "tag": "chat-42",
        "channel_id": "live_chat_requests",
        "notification_priority": "PRIORITY_MAX",
        "title_loc_key": "livechat_alert_title",
        "title_loc_args": ["Alpine Tours"],
        "body_loc_key": "livechat_alert_body",
        "body_loc_args": ["Ada"],
    }
    assert "visibility" not in message["android"]["notification"]


def test_a_loc_key_without_args_sends_no_empty_args_list() -> None:
    push = fcm_push(title_loc=LocalizedText("livechat_alert_title"), body_loc=None)
    notification = encoded(build_message(push, NOW_MS))["android"]["notification"]
    assert notification["title_loc_key"] == "livechat_alert_title"
    assert "title_loc_args" not in notification
    assert "body_loc_key" not in notification


def test_lock_screen_texts_make_the_notification_private_and_travel_in_data_for_the_app() -> None:
    push = fcm_push(public_title="Live chat request", public_body="A visitor is waiting")
    message = encoded(build_message(push, NOW_MS))

    assert message["android"]["notification"]["visibility"] == "PRIVATE"
    assert message["data"] == {
        **push.data,
        "public_title": "Live chat request",
        "public_body": "A visitor is waiting",
    }
    only_body = encoded(build_message(fcm_push(public_body="A visitor is waiting"), NOW_MS))
    assert only_body["android"]["notification"]["visibility"] == "PRIVATE"
    assert "public_title" not in only_body["data"]


@pytest.mark.parametrize("kind", [PushKind.HANDOFF_REMINDER, PushKind.TEST_ALERT])
def test_reminders_and_test_alerts_are_rendered_exactly_like_the_alert(kind: PushKind) -> None:
    alert = fcm_push(title_loc=TITLE_LOC, public_title="Live chat request")
    other = replace(alert, kind=kind)
    assert encoded(build_message(other, NOW_MS)) == encoded(build_message(alert, NOW_MS))


def test_a_closing_update_shows_the_cores_texts_and_loc_keys_when_it_sent_them() -> None:
    push = fcm_push(
        PushKind.HANDOFF_CLOSED,
        title="Live chat request · Alpine Tours",
        body="Taken by Anna",
        body_loc=LocalizedText("livechat_taken_by", ("Anna",)),
        data={**CLOSED_DATA, "outcome": "accepted", "agent_id": "agent-7", "agent_name": "Anna"},
    )
    message = encoded(build_message(push, NOW_MS))

    assert message["notification"] == {"title": "Live chat request · Alpine Tours", "body": "Taken by Anna"}
    assert message["android"]["notification"] == {
        "tag": "chat-42",
        "channel_id": "live_chat_updates",
        "notification_priority": "PRIORITY_LOW",
        "body_loc_key": "livechat_taken_by",
        "body_loc_args": ["Anna"],
    }
    assert (message["data"]["agent_id"], message["data"]["agent_name"]) == ("agent-7", "Anna")


def test_loc_args_are_cut_with_the_texts_to_fit_fcms_limit() -> None:
    visitor = "😀" * 1000
    push = fcm_push(
        title="Live chat · Alpine Tours",
        body=f"{visitor} is waiting",
        title_loc=TITLE_LOC,
        body_loc=LocalizedText("livechat_alert_body", (visitor,)),
    )
    message = build_message(push, NOW_MS)
    assert payload_size(encoded(message)) > MAX_PAYLOAD_BYTES, "the arg alone would not fit"

    posted = json.loads(body_bytes(message))["message"]

    assert payload_size(posted) <= MAX_PAYLOAD_BYTES
    assert fake_payload_size(posted) == payload_size(posted)
    notification = posted["android"]["notification"]
    assert notification["title_loc_args"] == ["Alpine Tours"], "the short arg stays whole"
    [cut] = notification["body_loc_args"]
    assert cut.endswith(ELLIPSIS) and visitor.startswith(cut.removesuffix(ELLIPSIS))
    assert posted["notification"]["body"].startswith(cut.removesuffix(ELLIPSIS))
    assert notification["body_loc_key"] == "livechat_alert_body", "keys are never cut"
