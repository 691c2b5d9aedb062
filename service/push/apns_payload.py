"""The pure half of the APNs adapter: a `Push` to APNs headers and payload (styled for iOS by
`ApnsStyle`, from the settings), Apple's answer to a `PushOutcome`, and which environment a token
belongs to. No I/O; tested with plain values (tests/unit/push/test_apns_mapping.py). The sender
shell is apns.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, assert_never
from urllib.parse import urlsplit

import msgspec
from aioapns import PushType

from service.domain.push import ApnsEnvironment, OutcomeKind, Provider, Push, PushKind, PushOutcome
from service.push.limits import AlertTexts, collapse_id_for, ensure_fits

APPLE_PRODUCTION_URL: Final = "https://api.push.apple.com:443"
APPLE_SANDBOX_URL: Final = "https://api.sandbox.push.apple.com:443"
PRIORITY_IMMEDIATE: Final = 10
PRIORITY_POWER_SAVING: Final = 5
BAD_DEVICE_TOKEN: Final = "BadDeviceToken"  # noqa: S105 -- an APNs reason, not a credential
_TOKEN_DEAD_400: Final = frozenset({BAD_DEVICE_TOKEN, "DeviceTokenNotForTopic"})
_json: Final = msgspec.json.Encoder()
_JSON_CONTAINERS: Final = (dict, list, tuple)


InterruptionLevel = Literal["time-sensitive", "active"]
ApnsClosingUpdate = Literal["alert", "background"]


@dataclass(frozen=True, slots=True)
class ApnsStyle:
    """How pushes look on an iPhone (settings `apns_interruption_level`, `apns_sound`,
    `apns_closing_update`; README "Behaviour" has the platform rule behind each default)."""

    interruption_level: InterruptionLevel = "time-sensitive"
    """Of the alert: `time-sensitive` is presented at once and can break through Focus."""
    sound: str = "default"
    """Of the alert: a sound file in the app bundle, `default` (the system's), "" for none."""
    closing_update: ApnsClosingUpdate = "alert"
    """`alert`: a passive alert replaces the request under its collapse id (not subject to the
    background budget); `background`: a silent `content-available` push, which iOS throttles."""


@dataclass(frozen=True, slots=True)
class ApnsNotification:
    """What goes on the wire for one push, minus the device token and credentials."""

    payload: dict[str, Any]
    push_type: PushType
    priority: int
    collapse_id: str
    expiration_s: int
    """`apns-expiration`: absolute UTC epoch seconds."""


def build_notification(push: Push, style: ApnsStyle | None = None) -> ApnsNotification:
    """The APNs notification for `push`, styled by `style`; ValueError if it cannot be expressed.

    A reminder looks like the alert it reminds of (same collapse id, interruption level, sound,
    thread); a test alert too (its collapse id is the test's own, never a chat's: it replaces only
    an earlier test). The collapse id is derived from the chat id
    so that it fits Apple's 64 bytes, and the alert's title, body and loc args are cut
    (`AlertTexts.fitted`) so that the payload, as aioapns serializes it, fits Apple's 4096 bytes
    (`limits.py`); `PayloadTooLargeError` if it cannot.
    """
    style = style or ApnsStyle()
    if push.provider is not Provider.APNS:
        raise ValueError(f"not an APNs push: {push.provider}")
    if "aps" in push.data:
        raise ValueError("data must not use the key 'aps', which APNs reserves")
    expiration_s = push.expires_at_ms // 1000
    collapse_id = collapse_id_for(push.collapse_id)
    match push.kind:
        case PushKind.HANDOFF_REQUESTED | PushKind.HANDOFF_REMINDER | PushKind.TEST_ALERT:
            return _alert(push, style, collapse_id, expiration_s)
        case PushKind.HANDOFF_CLOSED:
            return _closing_update(push, style, collapse_id, expiration_s)
        case _:
            assert_never(push.kind)


def _grouped(push: Push, aps: dict[str, Any]) -> dict[str, Any]:
    """`aps` with `thread-id` = the site id: iOS groups a site's requests (and their updates)."""
    site_id = push.data.get("site_id")
    return {**aps, "thread-id": site_id} if site_id else aps


def _alert_dictionary(push: Push, texts: AlertTexts) -> dict[str, str | list[str]]:
    """`aps.alert`: the rendered title and body (the fallback) and, when the core sent them, the
    loc keys and their (fitted) args. iOS shows the localized string of a loc key that the app's
    Localizable.strings has, and the key itself if it has not (docs/integration-guide.md)."""
    alert: dict[str, str | list[str]] = {}
    if texts.title is not None:
        alert["title"] = texts.title
    if texts.body is not None:
        alert["body"] = texts.body
    if push.title_loc is not None:
        alert["title-loc-key"] = push.title_loc.key
        if texts.title_args:
            alert["title-loc-args"] = list(texts.title_args)
    if push.body_loc is not None:
        alert["loc-key"] = push.body_loc.key
        if texts.body_args:
            alert["loc-args"] = list(texts.body_args)
    return alert


def _shown_texts(push: Push) -> AlertTexts:
    """The texts of a push the phone shows; ValueError if it has neither title nor body."""
    if push.title is None and push.body is None:
        raise ValueError(f"a visible {push.kind.value} push needs a title or a body")
    return AlertTexts.of(push)


def _fitted_payload(
    push: Push, texts: AlertTexts, payload_with: Callable[[dict[str, str | list[str]]], dict[str, Any]]
) -> dict[str, Any]:
    """The payload `payload_with(alert)`, its texts and loc args cut so that it fits 4096 bytes."""
    fitted = texts.fitted(lambda cut: payload_size(payload_with(_alert_dictionary(push, cut))))
    return payload_with(_alert_dictionary(push, fitted))


def _alert(push: Push, style: ApnsStyle, collapse_id: str, expiration_s: int) -> ApnsNotification:
    """An immediate alert with the push's texts, cut to fit Apple's payload limit."""
    sound = {"sound": style.sound} if style.sound else {}

    def payload_with(alert: dict[str, str | list[str]]) -> dict[str, Any]:
        aps = {"alert": alert, **sound, "interruption-level": style.interruption_level}
        return {"aps": _grouped(push, aps), **push.data}

    payload = _fitted_payload(push, _shown_texts(push), payload_with)
    return ApnsNotification(payload, PushType.ALERT, PRIORITY_IMMEDIATE, collapse_id, expiration_s)


def _closing_update(push: Push, style: ApnsStyle, collapse_id: str, expiration_s: int) -> ApnsNotification:
    """What retires the request's alert once the round closed, under the same collapse id.

    `alert` (default): a passive alert (no sound, no screen) stating the outcome replaces the shown
    request; iOS delivers it whether or not the app runs, outside the background-push budget.
    `content-available` stays so that a running app can also remove it. Priority 5: a passive
    alert presents nothing, so it needs no immediate delivery; power-saving delivery still reaches
    the phone by the time someone looks at it (Apple: priority 10 is for alerts that must show at
    once). Its texts are the core's (title, body, loc keys: "Taken by Anna"). `background`: a
    silent push, which iOS throttles (a few per hour, none to a force-quit app). Both carry the
    push's data (`outcome`, `request_id`, `agent_id`, ...).
    """
    payload: dict[str, Any]
    push_type: PushType
    match style.closing_update:
        case "alert":

            def payload_with(alert: dict[str, str | list[str]]) -> dict[str, Any]:
                aps = {"alert": alert, "interruption-level": "passive", "content-available": 1}
                return {"aps": _grouped(push, aps), **push.data}

            payload = _fitted_payload(push, _shown_texts(push), payload_with)
            push_type = PushType.ALERT
        case "background":
            payload, push_type = {"aps": {"content-available": 1}, **push.data}, PushType.BACKGROUND
        case _:
            assert_never(style.closing_update)
    ensure_fits(payload_size(payload))
    return ApnsNotification(payload, push_type, PRIORITY_POWER_SAVING, collapse_id, expiration_s)


def payload_size(payload: dict[str, Any]) -> int:
    """The payload's size in bytes as aioapns 4.0 sends it: `json.dumps(payload, ensure_ascii=False)`.

    Computed as msgspec's compact encoding (the same escapes) plus the space `json.dumps` puts after
    every `:` and `,`, because that is several times cheaper per push than `json.dumps` itself
    (figure: docs/benchmarks.md, "Figures behind the push code").
    """
    return len(_json.encode(payload)) + _separator_spaces(payload)


def _separator_spaces(value: dict[str, Any] | list[Any] | tuple[Any, ...]) -> int:
    """How many `": "` and `", "` separators `json.dumps` writes for `value` (one space each)."""
    items: Iterable[Any]
    if isinstance(value, dict):
        spaces, items = (2 * len(value) - 1 if value else 0), value.values()
    else:
        spaces, items = (len(value) - 1 if value else 0), value
    for item in items:
        if isinstance(item, _JSON_CONTAINERS):
            spaces += _separator_spaces(item)
    return spaces


def classify_response(status: int, reason: str | None) -> PushOutcome:
    """Map Apple's status and reason onto an outcome; `reason` is Apple's reason string."""
    if status == 200:
        return PushOutcome(OutcomeKind.DELIVERED)
    reason = reason or f"HTTP_{status}"
    if status == 410 or (status == 400 and reason in _TOKEN_DEAD_400):
        return PushOutcome(OutcomeKind.TOKEN_DEAD, reason)
    if status == 429 or status >= 500:
        return PushOutcome(OutcomeKind.RETRY_LATER, reason)
    return PushOutcome(OutcomeKind.REQUEST_BUG, reason)


def other_environment(environment: ApnsEnvironment) -> ApnsEnvironment:
    if environment is ApnsEnvironment.PRODUCTION:
        return ApnsEnvironment.SANDBOX
    return ApnsEnvironment.PRODUCTION


def is_bad_device_token(outcome: PushOutcome) -> bool:
    return outcome.kind is OutcomeKind.TOKEN_DEAD and outcome.reason == BAD_DEVICE_TOKEN


def settle_environment(
    named: ApnsEnvironment, tried: ApnsEnvironment, first: PushOutcome, retried: PushOutcome | None
) -> PushOutcome:
    """The outcome of a push sent to `tried` (answer `first`) and, after a `BadDeviceToken`, to the
    other environment (answer `retried`). `named` is the environment the device's snapshot names.

    Apple answers `BadDeviceToken` both for a malformed or unknown token and for a token of the
    other environment. So: the other environment delivers it or says 410 → the token belongs
    there (`actual_environment` set, the answer is that environment's); it says `BadDeviceToken`
    too → a dead token; it gives no verdict (timeout, 5xx, a request bug) → that answer's kind,
    with a reason naming both answers, and the device is not dropped on a guess.
    """
    answered_by, outcome = tried, first
    if retried is not None:
        answered_by = other_environment(tried)
        if is_bad_device_token(retried):
            return PushOutcome(OutcomeKind.TOKEN_DEAD, BAD_DEVICE_TOKEN)
        if retried.kind not in {OutcomeKind.DELIVERED, OutcomeKind.TOKEN_DEAD}:
            return replace(retried, reason=f"{BAD_DEVICE_TOKEN};{answered_by.value}:{retried.reason}")
        outcome = retried
    verdict = outcome.kind is OutcomeKind.DELIVERED or (
        outcome.kind is OutcomeKind.TOKEN_DEAD and not is_bad_device_token(outcome)
    )
    if verdict and answered_by is not named:
        return replace(outcome, actual_environment=answered_by)
    return outcome


def parse_endpoint(url: str) -> tuple[str, int]:
    """(host, port) of an `https://host[:port]` endpoint; ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.path not in {"", "/"}:
        raise ValueError(f"APNs endpoint must look like {APPLE_PRODUCTION_URL}: {url!r}")
    return parts.hostname, parts.port or 443
