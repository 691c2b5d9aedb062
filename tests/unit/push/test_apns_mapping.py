"""APNs mapping: Push -> APNs headers and payload, and Apple's answers -> PushOutcome (pure)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import pytest
from aioapns import PushType

from service.domain.push import ApnsEnvironment, LocalizedText, OutcomeKind, Provider, PushKind, PushOutcome
from service.push.apns_payload import (
    PRIORITY_IMMEDIATE,
    PRIORITY_POWER_SAVING,
    ApnsNotification,
    ApnsStyle,
    build_notification,
    classify_response,
    parse_endpoint,
    payload_size,
    settle_environment,
)
from service.push.apns_protocol import ExpiringRequest
from service.push.limits import (
    ELLIPSIS,
    MAX_COLLAPSE_ID_BYTES,
    MAX_PAYLOAD_BYTES,
    PayloadTooLargeError,
    collapse_id_for,
)
from tests.clocks import T0_MS
from tests.pushes import apns_push

NOW_MS = T0_MS


def test_handoff_request_is_an_immediate_time_sensitive_alert_grouped_per_site_collapsed_per_chat() -> None:
    assert build_notification(apns_push()) == ApnsNotification(
        payload={
            "aps": {
                "alert": {"title": "A visitor is waiting", "body": "Alpine Tours: someone asks for a human"},
                "sound": "default",
                "interruption-level": "time-sensitive",
                "thread-id": "site-1",
            },
            "chat_id": "chat-42",
            "site_id": "site-1",
        },
        push_type=PushType.ALERT,
        priority=PRIORITY_IMMEDIATE,
        collapse_id="chat-42",
        expiration_s=(NOW_MS + 45_999) // 1000,
    )


def test_the_alerts_interruption_level_and_sound_come_from_the_style() -> None:
    aps = build_notification(apns_push(), ApnsStyle(interruption_level="active", sound="bell.caf")).payload[
        "aps"
    ]

    assert (aps["interruption-level"], aps["sound"]) == ("active", "bell.caf")


def test_an_empty_sound_setting_makes_a_silent_alert() -> None:
    assert "sound" not in build_notification(apns_push(), ApnsStyle(sound="")).payload["aps"]


def test_a_push_without_a_site_id_has_no_thread_id() -> None:
    aps = build_notification(apns_push(data={"chat_id": "chat-42"})).payload["aps"]

    assert "thread-id" not in aps


CLOSED_DATA = {"chat_id": "chat-42", "site_id": "site-1", "request_id": "req-1", "outcome": "accepted"}


def test_handoff_closed_is_by_default_a_passive_alert_stating_the_outcome_under_the_same_collapse_id() -> (
    None
):
    push = apns_push(PushKind.HANDOFF_CLOSED, title=None, body="Taken by an agent", data=CLOSED_DATA)

    assert build_notification(push) == ApnsNotification(
        payload={
            "aps": {
                "alert": {"body": "Taken by an agent"},
                "interruption-level": "passive",
                "content-available": 1,
                "thread-id": "site-1",
            },
            **CLOSED_DATA,
        },
        push_type=PushType.ALERT,
        priority=PRIORITY_POWER_SAVING,
        collapse_id="chat-42",
        expiration_s=(NOW_MS + 45_999) // 1000,
    )


def test_a_closing_alert_needs_the_cores_texts_a_background_update_does_not() -> None:
    push = apns_push(PushKind.HANDOFF_CLOSED, title=None, body=None, data=CLOSED_DATA)

    with pytest.raises(ValueError, match="title or a body"):
        build_notification(push)
    assert build_notification(push, ApnsStyle(closing_update="background")).push_type is PushType.BACKGROUND


def test_handoff_closed_as_background_is_a_silent_push_with_the_same_collapse_id_and_expiration() -> None:
    push = apns_push(PushKind.HANDOFF_CLOSED, title=None, body=None)

    assert build_notification(push, ApnsStyle(closing_update="background")) == ApnsNotification(
        payload={"aps": {"content-available": 1}, "chat_id": "chat-42", "site_id": "site-1"},
        push_type=PushType.BACKGROUND,
        priority=PRIORITY_POWER_SAVING,
        collapse_id="chat-42",
        expiration_s=(NOW_MS + 45_999) // 1000,
    )


def test_an_alert_with_only_a_body_has_only_a_body() -> None:
    notification = build_notification(apns_push(title=None))

    assert notification.payload["aps"]["alert"] == {"body": "Alpine Tours: someone asks for a human"}


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"title": None, "body": None}, "title or a body"),
        ({"data": {"aps": "mine"}}, "reserves"),
        ({"provider": Provider.FCM}, "not an APNs push"),
    ],
)
def test_pushes_that_cannot_be_expressed(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_notification(apns_push(**overrides))


LONG_CHAT_ID = "livechat:visitor-chat:" + "0f3c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b" * 2  # 94 bytes
HUGE_TITLE = "Live chat request · " + "🏔" * 200  # the decoder's longest site name, 4 bytes a character
HUGE_BODY = "😀" * 1000 + " is waiting for an agent. Tap to open Active chats."


def test_a_long_chat_id_gets_the_derived_collapse_id_on_the_alert_and_its_closing_update() -> None:
    alert = build_notification(apns_push(collapse_id=LONG_CHAT_ID))
    closing = build_notification(apns_push(PushKind.HANDOFF_CLOSED, collapse_id=LONG_CHAT_ID, title=None))

    assert alert.collapse_id == closing.collapse_id == collapse_id_for(LONG_CHAT_ID)
    assert len(alert.collapse_id.encode()) <= MAX_COLLAPSE_ID_BYTES


def test_an_alert_too_big_for_apple_has_its_texts_cut_to_fit_as_aioapns_sends_it() -> None:
    data = {"chat_id": "c" * 256, "site_id": "s" * 256, "type": "handoff_requested", "open_tab": "active"}
    notification = build_notification(apns_push(title=HUGE_TITLE, body=HUGE_BODY, data=data))

    sent = json.dumps(notification.payload, ensure_ascii=False).encode()  # aioapns 4.0's encoding
    assert MAX_PAYLOAD_BYTES - 4 <= len(sent) <= MAX_PAYLOAD_BYTES
    alert = notification.payload["aps"]["alert"]
    assert alert["title"] == HUGE_TITLE, "the shorter text (the site name) stays whole"
    assert alert["body"].startswith("😀") and alert["body"].endswith(ELLIPSIS)
    assert {key: notification.payload[key] for key in data} == data, "data is never cut"


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"aps": {}},
        {"aps": {"alert": {"title": "t", "body": "b"}, "sound": "default"}, "chat_id": "c", "n": 1},
        {"aps": {"content-available": 1}, "x": 'a\n\x01\x7f\u2028é😀"\\/', "list": [1, "2", [], {}]},
    ],
)
def test_the_payload_size_is_what_aioapns_sends(payload: dict[str, Any]) -> None:
    assert payload_size(payload) == len(json.dumps(payload, ensure_ascii=False).encode())


def test_an_alert_that_fits_keeps_its_texts() -> None:
    notification = build_notification(apns_push(title="T" * 1000, body="B" * 2000))
    assert notification.payload["aps"]["alert"] == {"title": "T" * 1000, "body": "B" * 2000}


@pytest.mark.parametrize("kind", list(PushKind))
def test_data_too_big_for_apple_is_refused_before_sending(kind: PushKind) -> None:
    with pytest.raises(PayloadTooLargeError):
        build_notification(apns_push(kind, data={"blob": "x" * MAX_PAYLOAD_BYTES}))


TOKEN_DEAD, RETRY, BUG = OutcomeKind.TOKEN_DEAD, OutcomeKind.RETRY_LATER, OutcomeKind.REQUEST_BUG


@pytest.mark.parametrize(
    ("status", "reason", "outcome"),
    [
        (200, None, PushOutcome(OutcomeKind.DELIVERED)),
        (410, "Unregistered", PushOutcome(TOKEN_DEAD, "Unregistered")),
        (410, "ExpiredToken", PushOutcome(TOKEN_DEAD, "ExpiredToken")),
        (400, "BadDeviceToken", PushOutcome(TOKEN_DEAD, "BadDeviceToken")),
        (400, "DeviceTokenNotForTopic", PushOutcome(TOKEN_DEAD, "DeviceTokenNotForTopic")),
        (429, "TooManyRequests", PushOutcome(RETRY, "TooManyRequests")),
        (429, "TooManyProviderTokenUpdates", PushOutcome(RETRY, "TooManyProviderTokenUpdates")),
        (500, "InternalServerError", PushOutcome(RETRY, "InternalServerError")),
        (503, "ServiceUnavailable", PushOutcome(RETRY, "ServiceUnavailable")),
        (503, None, PushOutcome(RETRY, "HTTP_503")),
        (400, "BadCollapseId", PushOutcome(BUG, "BadCollapseId")),
        (400, "BadExpirationDate", PushOutcome(BUG, "BadExpirationDate")),
        (400, "TopicDisallowed", PushOutcome(BUG, "TopicDisallowed")),
        (400, "PayloadEmpty", PushOutcome(BUG, "PayloadEmpty")),
        (403, "InvalidProviderToken", PushOutcome(BUG, "InvalidProviderToken")),
        (403, "ExpiredProviderToken", PushOutcome(BUG, "ExpiredProviderToken")),
        (405, "MethodNotAllowed", PushOutcome(BUG, "MethodNotAllowed")),
        (413, "PayloadTooLarge", PushOutcome(BUG, "PayloadTooLarge")),
    ],
)
def test_response_classification(status: int, reason: str | None, outcome: PushOutcome) -> None:
    assert classify_response(status, reason) == outcome


PROD, SANDBOX = ApnsEnvironment.PRODUCTION, ApnsEnvironment.SANDBOX
BAD_TOKEN = PushOutcome(TOKEN_DEAD, "BadDeviceToken")


@pytest.mark.parametrize(
    ("named", "tried", "first", "retried", "settled"),
    [
        # The environment the snapshot names answers: nothing else to say.
        (PROD, PROD, PushOutcome(OutcomeKind.DELIVERED), None, PushOutcome(OutcomeKind.DELIVERED)),
        (PROD, PROD, PushOutcome(TOKEN_DEAD, "Unregistered"), None, PushOutcome(TOKEN_DEAD, "Unregistered")),
        (SANDBOX, SANDBOX, PushOutcome(RETRY, "timeout"), None, PushOutcome(RETRY, "timeout")),
        # BadDeviceToken, and the other environment knows the token: a mismatch, that answer counts.
        (
            PROD,
            PROD,
            BAD_TOKEN,
            PushOutcome(OutcomeKind.DELIVERED),
            PushOutcome(OutcomeKind.DELIVERED, actual_environment=SANDBOX),
        ),
        (
            SANDBOX,
            SANDBOX,
            BAD_TOKEN,
            PushOutcome(OutcomeKind.DELIVERED),
            PushOutcome(OutcomeKind.DELIVERED, actual_environment=PROD),
        ),
        (
            PROD,
            PROD,
            BAD_TOKEN,
            PushOutcome(TOKEN_DEAD, "Unregistered"),
            PushOutcome(TOKEN_DEAD, "Unregistered", actual_environment=SANDBOX),
        ),
        # Unknown in both environments: a dead token like any other.
        (PROD, PROD, BAD_TOKEN, BAD_TOKEN, BAD_TOKEN),
        # The other environment gives no verdict: not dropped on a guess.
        (
            PROD,
            PROD,
            BAD_TOKEN,
            PushOutcome(RETRY, "ServiceUnavailable", retry_after_s=3.0),
            PushOutcome(RETRY, "BadDeviceToken;sandbox:ServiceUnavailable", retry_after_s=3.0),
        ),
        (
            SANDBOX,
            SANDBOX,
            BAD_TOKEN,
            PushOutcome(BUG, "TopicDisallowed"),
            PushOutcome(BUG, "BadDeviceToken;production:TopicDisallowed"),
        ),
        # Sent straight to where the token was found before (snapshot still wrong): still a mismatch.
        (
            PROD,
            SANDBOX,
            PushOutcome(OutcomeKind.DELIVERED),
            None,
            PushOutcome(OutcomeKind.DELIVERED, actual_environment=SANDBOX),
        ),
        (PROD, SANDBOX, PushOutcome(RETRY, "timeout"), None, PushOutcome(RETRY, "timeout")),
        # ... and if it is gone from there but the named environment knows it, no mismatch.
        (PROD, SANDBOX, BAD_TOKEN, PushOutcome(OutcomeKind.DELIVERED), PushOutcome(OutcomeKind.DELIVERED)),
    ],
)
def test_settling_which_environment_a_token_belongs_to(
    named: ApnsEnvironment,
    tried: ApnsEnvironment,
    first: PushOutcome,
    retried: PushOutcome | None,
    settled: PushOutcome,
) -> None:
    assert settle_environment(named, tried, first, retried) == settled


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("https://api.push.apple.com:443", ("api.push.apple.com", 443)),
        ("https://api.sandbox.push.apple.com", ("api.sandbox.push.apple.com", 443)),
        ("https://127.0.0.1:8443/", ("127.0.0.1", 8443)),
    ],
)
def test_endpoint_parsing(url: str, endpoint: tuple[str, int]) -> None:
    assert parse_endpoint(url) == endpoint


@pytest.mark.parametrize("url", ["http://api.push.apple.com", "https://api.push.apple.com/3/device", "api"])
def test_endpoints_that_are_not_https_base_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="APNs endpoint"):
        parse_endpoint(url)


def test_expiring_request_turns_the_deadline_into_the_ttl_aioapns_adds_to_now() -> None:
    deadline_s = int(time.time()) + 45
    request = ExpiringRequest(expires_at_s=deadline_s, device_token="a1", message={"aps": {}}, time_to_live=7)

    header = int(time.time()) + request.time_to_live  # what aioapns writes as apns-expiration

    assert header in {deadline_s - 1, deadline_s}  # one early only if a second boundary passed


# -- #12: loc keys, reminder and test kinds, the core's closing texts -------------------------------

TITLE_LOC = LocalizedText("LIVECHAT_ALERT_TITLE", ("Alpine Tours",))
BODY_LOC = LocalizedText("LIVECHAT_ALERT_BODY", ("Ada",))


def test_an_alert_carries_the_loc_keys_and_args_next_to_the_rendered_texts() -> None:
    aps = build_notification(apns_push(title_loc=TITLE_LOC, body_loc=BODY_LOC)).payload["aps"]

    assert aps["alert"] == {
        "title": "A visitor is waiting",
        "body": "Alpine Tours: someone asks for a human",
        "title-loc-key": "LIVECHAT_ALERT_TITLE",
        "title-loc-args": ["Alpine Tours"],
        "loc-key": "LIVECHAT_ALERT_BODY",
        "loc-args": ["Ada"],
    }


def test_a_loc_key_without_args_sends_no_empty_args_array() -> None:
    alert = build_notification(apns_push(body_loc=LocalizedText("LIVECHAT_ALERT_BODY"))).payload["aps"][
        "alert"
    ]
    assert alert["loc-key"] == "LIVECHAT_ALERT_BODY"
    assert "loc-args" not in alert and "title-loc-key" not in alert


def test_lock_screen_texts_do_not_travel_to_apns_where_nothing_in_the_payload_can_use_them() -> None:
    payload = build_notification(apns_push(public_title="Live chat request", public_body="Waiting")).payload
    assert "public_title" not in json.dumps(payload) and "Waiting" not in json.dumps(payload)


@pytest.mark.parametrize("kind", [PushKind.HANDOFF_REMINDER, PushKind.TEST_ALERT])
def test_reminders_and_test_alerts_are_rendered_exactly_like_the_alert(kind: PushKind) -> None:
    alert = apns_push(title_loc=TITLE_LOC, body_loc=BODY_LOC)
    assert build_notification(replace(alert, kind=kind)) == build_notification(alert)


def test_a_closing_update_shows_the_cores_texts_and_loc_keys_when_it_sent_them() -> None:
    data = {**CLOSED_DATA, "agent_id": "agent-7", "agent_name": "Anna"}
    push = apns_push(
        PushKind.HANDOFF_CLOSED,
        title="Live chat request · Alpine Tours",
        body="Taken by Anna",
        body_loc=LocalizedText("LIVECHAT_TAKEN_BY", ("Anna",)),
        data=data,
    )
    notification = build_notification(push)

    assert notification.payload == {
        "aps": {
            "alert": {
                "title": "Live chat request · Alpine Tours",
                "body": "Taken by Anna",
                "loc-key": "LIVECHAT_TAKEN_BY",
                "loc-args": ["Anna"],
            },
            "interruption-level": "passive",
            "content-available": 1,
            "thread-id": "site-1",
        },
        **data,
    }
    assert (notification.push_type, notification.priority) == (PushType.ALERT, PRIORITY_POWER_SAVING)


def test_loc_args_are_measured_and_cut_with_the_texts_to_fit_apples_limit() -> None:
    visitor = "😀" * 1000
    push = apns_push(
        title="Live chat · Alpine Tours",
        body=f"{visitor} is waiting",
        title_loc=TITLE_LOC,
        body_loc=LocalizedText("LIVECHAT_ALERT_BODY", (visitor,)),
    )

    payload = build_notification(push).payload

    assert payload_size(payload) == len(json.dumps(payload, ensure_ascii=False).encode())
    assert MAX_PAYLOAD_BYTES - 8 <= payload_size(payload) <= MAX_PAYLOAD_BYTES
    alert = payload["aps"]["alert"]
    assert alert["title-loc-args"] == ["Alpine Tours"], "the short arg stays whole"
    [cut] = alert["loc-args"]
    assert cut.endswith(ELLIPSIS) and visitor.startswith(cut.removesuffix(ELLIPSIS))
    assert alert["body"].startswith(cut.removesuffix(ELLIPSIS)), "the arg and its text read alike"
    assert alert["loc-key"] == "LIVECHAT_ALERT_BODY", "keys are never cut"
