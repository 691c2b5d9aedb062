"""The pure half of the FCM adapter: a `Push` to an FCM v1 message and its request body, FCM's
answer to a `PushOutcome`, styled for Android by `FcmStyle` (from the settings). No I/O; tested
with plain values (tests/unit/push/test_fcm_mapping.py). The sender shell is fcm.py.

firebase-admin builds, validates and encodes the message (`encode_body`); msgspec serialises the
encoded body (`body_bytes`), cutting the notification's texts to fit FCM's 4096 bytes.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, assert_never

import msgspec
from firebase_admin import messaging

from service.domain.push import OutcomeKind, Provider, Push, PushKind, PushOutcome
from service.push import firebase_encoder
from service.push.limits import AlertTexts, collapse_id_for, ensure_fits

MAX_TTL_S: Final = 2_419_200
"""FCM refuses a TTL above 28 days."""
_FCM_ERROR_TYPE: Final = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_TOKEN_DEAD: Final = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})
_TRANSIENT: Final = frozenset(
    {"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "ABORTED"}
)


FcmClosingUpdate = Literal["notification", "data"]


@dataclass(frozen=True, slots=True)
class FcmStyle:
    """How pushes look on an Android phone (settings `fcm_channel_id`, `fcm_closing_channel_id`,
    `fcm_closing_update`; README "Behaviour" has the platform rule behind each default)."""

    channel_id: str = "live_chat_requests"
    """The alerts' notification channel; the app creates it (its importance decides sound and
    heads-up on Android 8+)."""
    closing_channel_id: str = "live_chat_updates"
    """The closing updates' channel; the app creates it with low importance (no sound, no pop-up)."""
    closing_update: FcmClosingUpdate = "notification"
    """`notification`: a notification under the alert's tag replaces it, shown by Android itself
    whether or not the app runs; `data`: a data message the app's code must handle (not delivered
    to a force-stopped app)."""


def ttl_seconds(expires_at_ms: int, now_ms: int) -> int:
    """Whole seconds left until the deadline (rounded down, so FCM never outlives it), 0 to 28 days."""
    return min(MAX_TTL_S, max(0, expires_at_ms - now_ms) // 1000)


def build_message(push: Push, now_ms: int, style: FcmStyle | None = None) -> messaging.Message:
    """The FCM v1 message for `push`, styled by `style`; ValueError if it cannot be expressed.

    The collapse key and the notification tag are the chat's derived collapse id (`limits.py`),
    the same as APNs' (a test alert's is the test's own, never a chat's). A reminder and a test
    alert look like the alert (tag, channel, priority). The 4096-byte limit is enforced where the
    message is encoded (`body_bytes`), so that firebase-admin's encoder runs once per push.
    """
    style = style or FcmStyle()
    if push.provider is not Provider.FCM:
        raise ValueError(f"not an FCM push: {push.provider}")
    collapse_id = collapse_id_for(push.collapse_id)
    fields: dict[str, Any] = {"data": _data(push)}
    # High priority for every kind: on a dozing phone a normal-priority message waits for a
    # maintenance window, and the request (or the stale alert) would wait with it.
    android: dict[str, Any] = {
        "collapse_key": collapse_id,
        "priority": "high",
        "ttl": ttl_seconds(push.expires_at_ms, now_ms),
    }
    match push.kind:
        case PushKind.HANDOFF_REQUESTED | PushKind.HANDOFF_REMINDER | PushKind.TEST_ALERT:
            # The tag makes a later notification for the same chat replace this one on the phone;
            # PRIORITY_MAX is what heads-up needs before Android 8 (after: the channel's importance).
            _show(fields, android, push, collapse_id, style.channel_id, "max")
        case PushKind.HANDOFF_CLOSED:
            match style.closing_update:
                case "notification":
                    # Replaces the alert (same tag) in the quiet channel, shown by Android itself,
                    # so it lands with the app not running too. PRIORITY_LOW: no sound or pop-up
                    # before Android 8 either.
                    _show(fields, android, push, collapse_id, style.closing_channel_id, "low")
                case "data":
                    # Data-only: the app's service removes the alert (unless the app was
                    # force-stopped); Android deprioritises high-priority data messages that
                    # never show a notification.
                    pass
                case _:
                    assert_never(style.closing_update)
        case _:
            assert_never(push.kind)
    fields["android"] = messaging.AndroidConfig(**android)
    # Message(token=...) warns since firebase-admin 7.5: FCM is moving devices from registration
    # tokens to Firebase installation IDs (`Message.fid`). They are different identifiers and our
    # apps register registration tokens, which the v1 API still takes in `message.token`; putting
    # one in `fid` would be wrong. So we keep `token`, set as the attribute the constructor would
    # set (and the encoder validates), which does not warn: no per-push `warnings.catch_warnings()`
    # (it copies the global filter list each time) and no process-wide filter. Should a later
    # firebase-admin warn on the attribute too, the tests (warnings are errors) say so. Moving to
    # FIDs starts in the apps.
    message = messaging.Message(**fields)
    message.token = push.token
    return message


def _data(push: Push) -> dict[str, str]:
    """The message's data: the push's, plus its lock-screen texts (`public_title` /
    `public_body`) when it has them, for the app that renders the notification itself to build
    its public version (FCM HTTP v1 has no field for Android's `Notification.publicVersion`)."""
    public = (("public_title", push.public_title), ("public_body", push.public_body))
    return {**push.data, **{key: text for key, text in public if text is not None}}


def _show(
    fields: dict[str, Any],
    android: dict[str, Any],
    push: Push,
    tag: str,
    channel_id: str,
    priority: str,
) -> None:
    """Add a notification showing the push's texts to the message's `fields` and `android`
    config: the rendered title and body (the fallback) and the core's loc keys and args, in
    `channel_id`; ValueError if the push has neither title nor body.

    `visibility` private when the push has lock-screen texts: on a secure lock screen Android
    then shows the app's name and "Contents hidden" (or the public version the app builds from
    `public_title` / `public_body` when it renders the notification itself).
    """
    if push.title is None and push.body is None:
        raise ValueError(f"a visible {push.kind.value} push needs a title or a body")
    texts = AlertTexts.of(push)
    fields["notification"] = messaging.Notification(title=texts.title, body=texts.body)
    loc: dict[str, Any] = {}
    if push.title_loc is not None:
        loc |= {"title_loc_key": push.title_loc.key, "title_loc_args": list(texts.title_args) or None}
    if push.body_loc is not None:
        loc |= {"body_loc_key": push.body_loc.key, "body_loc_args": list(texts.body_args) or None}
    private = push.public_title is not None or push.public_body is not None
    android["notification"] = messaging.AndroidNotification(
        tag=tag,
        channel_id=channel_id,
        priority=priority,
        visibility="private" if private else None,
        **loc,
    )


def fcm_error_code(body: object) -> str | None:
    """The `errorCode` of the FcmError detail in an FCM v1 error body, if there is one."""
    error = body.get("error") if isinstance(body, Mapping) else None
    details = error.get("details") if isinstance(error, Mapping) else None
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, Mapping) and detail.get("@type") == _FCM_ERROR_TYPE:
            code = detail.get("errorCode")
            return str(code) if code else None
    return None


def rpc_status(body: object) -> str | None:
    """The Google RPC status (`error.status`, e.g. "UNAVAILABLE") of an error body, if any."""
    error = body.get("error") if isinstance(body, Mapping) else None
    status = error.get("status") if isinstance(error, Mapping) else None
    return str(status) if status else None


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or bad."""
    if value is None or not value.strip():
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_s)


def classify_error(
    *, http_status: int | None, error_code: str | None, status: str | None, retry_after_s: float | None = None
) -> PushOutcome:
    """Map FCM's error (HTTP status, FcmError code, RPC status) onto an outcome; reason = FCM's code."""
    reason = error_code or status or (f"HTTP_{http_status}" if http_status else "UNKNOWN")
    if error_code in _TOKEN_DEAD:
        return PushOutcome(OutcomeKind.TOKEN_DEAD, reason)
    transient_status = http_status is not None and (http_status == 429 or http_status >= 500)
    if error_code in _TRANSIENT or status in _TRANSIENT or transient_status:
        return PushOutcome(OutcomeKind.RETRY_LATER, reason, retry_after_s)
    return PushOutcome(OutcomeKind.REQUEST_BUG, reason)


def outcome_of_answer(http_status: int, body: object, retry_after: str | None, now_s: float) -> PushOutcome:
    """Map FCM's HTTP answer to one send (status, decoded JSON body, Retry-After) onto an outcome."""
    if http_status == 200:
        return PushOutcome(OutcomeKind.DELIVERED)
    return classify_error(
        http_status=http_status,
        error_code=fcm_error_code(body),
        status=rpc_status(body),
        retry_after_s=parse_retry_after(retry_after, now_s),
    )


def encode_body(message: messaging.Message) -> dict[str, Any]:
    """The v1 request body, encoded and validated by firebase-admin (ValueError if invalid)."""
    return {"message": firebase_encoder.encode_message(message)}


_json: Final = msgspec.json.Encoder()
_TARGETS: Final = frozenset({"token", "fid", "topic", "condition"})


def body_bytes(message: messaging.Message) -> bytes:
    """`encode_body(message)` as JSON bytes, with the notification's title, body and loc args cut
    (`AlertTexts.fitted`) so that `payload_size` is at most 4096 bytes; `PayloadTooLargeError` if
    it cannot be. msgspec, not `json.dumps`: cheaper per push (docs/benchmarks.md, "Figures behind
    the push code")."""
    body = encode_body(message)
    encoded: dict[str, Any] = body["message"]
    shown: dict[str, Any] = encoded.get("notification") or {}
    android: dict[str, Any] = encoded.get("android") or {}
    localized: dict[str, Any] = android.get("notification") or {}
    texts = AlertTexts(
        shown.get("title"),
        shown.get("body"),
        tuple(localized.get("title_loc_args") or ()),
        tuple(localized.get("body_loc_args") or ()),
    )
    if texts == AlertTexts(None, None):
        ensure_fits(payload_size(encoded))
        return _json.encode(body)

    def with_texts(cut: AlertTexts) -> dict[str, Any]:
        rendered = {key: text for key, text in (("title", cut.title), ("body", cut.body)) if text is not None}
        args = {
            key: list(value)
            for key, value in (("title_loc_args", cut.title_args), ("body_loc_args", cut.body_args))
            if value
        }
        notification = {**{k: v for k, v in shown.items() if k not in {"title", "body"}}, **rendered}
        result = {**encoded, "android": {**android, "notification": {**localized, **args}}}
        if notification:
            result["notification"] = notification
        return result

    fitted = texts.fitted(lambda cut: payload_size(with_texts(cut)))
    if fitted == texts:
        return _json.encode(body)
    return _json.encode({"message": with_texts(fitted)})


def payload_size(encoded: Mapping[str, Any]) -> int:
    """What FCM's 4096-byte limit is held against: the encoded v1 `message` without its target
    (`token`), as compact UTF-8 JSON. FCM documents the limit for the data and notification
    payload; the whole message is a superset of that, so what fits here fits FCM."""
    return len(_json.encode({key: value for key, value in encoded.items() if key not in _TARGETS}))
