"""Decode consumed records into domain values, or into a typed `Rejection` — never an exception.

Two steps: the CloudEvents envelope (with `data` kept raw), then `data` by `type` into a
msgspec schema that checks types and bounds. msgspec was picked over pydantic for this hot path
because it validates straight from bytes into typed structs several times faster, which is what
lets one worker keep up with tens of thousands of events per second.

Only what makes a record unusable rejects it (ids, the request's time, the envelope). An optional
field that is of the wrong type, too long or out of range is repaired instead — dropped, clamped or
truncated, see `repair.py` — and the record is used: one bad phone number must not silence a site.
Requests are decoded strictly first (the fast path for clean events, which are nearly all of them)
and only on a validation error once more with their optional fields kept raw; site snapshots, which
are rare, always take the lenient path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal, TypeVar

import msgspec

from service.domain.events import (
    AgentJoined,
    AgentSnapshot,
    ChatEnded,
    ChatEvent,
    Device,
    HandoffRequested,
    SiteSnapshot,
)
from service.domain.push import ApnsEnvironment, Provider
from service.wire.rejection import Reason, Rejection
from service.wire.repair import Decoded, Repair, RepairAction, RepairedField, truncated

HANDOFF_REQUESTED = "livechat.chat.handoff_requested"
AGENT_JOINED = "livechat.chat.agent_joined"
CHAT_ENDED = "livechat.chat.ended"
AGENT_UPDATED = "livechat.agent.updated"
SITE_UPDATED = "livechat.site.updated"

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
MAX_TEXT_CHARS = 1000
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)]
MAX_SITE_NAME_CHARS = 200
EMAIL_CHARS = (3, 320)
PHONE_CHARS = (1, 64)
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]
Token = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
MAX_DETAIL_CHARS = 500
"""Longest rejection detail: whatever a record holds, its log line and dead-letter headers stay small."""


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_value_bytes: int = 1_048_576
    max_time_to_accept_s: int = 86_400
    clock_skew_ms: int = 300_000
    """How far in the future an event time may lie (producers' clocks drift)."""
    max_event_age_ms: int = 7 * 86_400_000
    """Event times older than this are absurd, not late."""


class _Envelope(msgspec.Struct, frozen=True):
    specversion: str
    id: Id
    source: Annotated[str, msgspec.Meta(min_length=1)]
    type: Annotated[str, msgspec.Meta(min_length=1)]
    data: msgspec.Raw = msgspec.Raw(b"null")
    time: str | None = None


class _Visitor(msgspec.Struct, frozen=True):
    name: Text | None = None


class _HandoffData(msgspec.Struct, frozen=True):
    chat_id: Id
    site_id: Id
    requested_at: Timestamp
    visitor: _Visitor | None = None
    time_to_accept_seconds: int | None = None


_NULL = msgspec.Raw(b"null")
_V = TypeVar("_V")


class _LooseHandoffData(msgspec.Struct, frozen=True):
    """A request whose strict decoding failed: required fields strict, optional ones kept raw."""

    chat_id: Id
    site_id: Id
    requested_at: Timestamp
    visitor: msgspec.Raw = _NULL
    time_to_accept_seconds: msgspec.Raw = _NULL


class _LooseVisitor(msgspec.Struct, frozen=True):
    name: msgspec.Raw = _NULL  # the visitor's other fields are skipped, never decoded


class _JoinedData(msgspec.Struct, frozen=True):
    chat_id: Id
    site_id: Id
    agent_id: Id
    joined_at: Timestamp


class _EndedData(msgspec.Struct, frozen=True):
    chat_id: Id
    site_id: Id
    ended_at: Timestamp
    reason: Text | None = None


class _SiteToggle(msgspec.Struct, frozen=True):
    site_id: Id
    push_enabled: bool


class _Device(msgspec.Struct, frozen=True):
    device_id: Id
    provider: Literal["fcm", "apns"]
    token: Token
    apns_environment: Literal["production", "sandbox"] = "production"


class _AgentData(msgspec.Struct, frozen=True):
    agent_id: Id
    account_id: Id
    live_chat_available: bool
    sites: list[_SiteToggle]
    devices: list[_Device]


class _LooseContact(msgspec.Struct, frozen=True):
    email: msgspec.Raw = _NULL
    phone: msgspec.Raw = _NULL


class _SiteData(msgspec.Struct, frozen=True):
    """Always lenient: only the ids make a site snapshot unusable; every other field is checked
    one by one (`_site_fields`)."""

    site_id: Id
    account_id: Id
    name: msgspec.Raw = _NULL
    time_to_accept_seconds: msgspec.Raw = _NULL
    contact: msgspec.Raw = _NULL
    missed_message: msgspec.Raw = _NULL


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_DATA_DECODERS: dict[str, msgspec.json.Decoder[object]] = {
    HANDOFF_REQUESTED: msgspec.json.Decoder(_HandoffData),
    AGENT_JOINED: msgspec.json.Decoder(_JoinedData),
    CHAT_ENDED: msgspec.json.Decoder(_EndedData),
    AGENT_UPDATED: msgspec.json.Decoder(_AgentData),
    SITE_UPDATED: msgspec.json.Decoder(_SiteData),
}
_LOOSE_DECODERS: dict[str, msgspec.json.Decoder[object]] = {
    HANDOFF_REQUESTED: msgspec.json.Decoder(_LooseHandoffData),
}
_OPTIONAL_STR = msgspec.json.Decoder(str | None)
_OPTIONAL_INT = msgspec.json.Decoder(int | None)
_VISITOR = msgspec.json.Decoder(_LooseVisitor | None)
_CONTACT = msgspec.json.Decoder(_LooseContact | None)
CHAT_EVENT_TYPES = frozenset({HANDOFF_REQUESTED, AGENT_JOINED, CHAT_ENDED})
_AGENT_TYPES = frozenset({AGENT_UPDATED})
_SITE_TYPES = frozenset({SITE_UPDATED})


EVENT_TYPE_NAMES: dict[type[ChatEvent], str] = {
    HandoffRequested: HANDOFF_REQUESTED,
    AgentJoined: AGENT_JOINED,
    ChatEnded: CHAT_ENDED,
}

_F, _A = RepairedField, RepairAction
REPAIRABLE: dict[str, tuple[Repair, ...]] = {
    HANDOFF_REQUESTED: (
        Repair(_F.VISITOR, _A.DROPPED),
        Repair(_F.VISITOR_NAME, _A.TRUNCATED),
        Repair(_F.VISITOR_NAME, _A.DROPPED),
        Repair(_F.TIME_TO_ACCEPT, _A.DROPPED),
    ),
    SITE_UPDATED: (
        Repair(_F.NAME, _A.TRUNCATED),
        Repair(_F.NAME, _A.DROPPED),
        Repair(_F.TIME_TO_ACCEPT, _A.CLAMPED),
        Repair(_F.TIME_TO_ACCEPT, _A.DROPPED),
        Repair(_F.CONTACT, _A.DROPPED),
        Repair(_F.CONTACT_EMAIL, _A.DROPPED),
        Repair(_F.CONTACT_PHONE, _A.DROPPED),
        Repair(_F.MISSED_MESSAGE, _A.DROPPED),
    ),
}
"""Every repair the decoder can make, by event type: the label sets of `notifier_fields_repaired_total`."""


class _Reject(Exception):  # noqa: N818 -- internal control flow, converted to Rejection at the boundary
    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.detail)
        self.rejection = rejection


def decode_chat_event(
    key: bytes | None, value: bytes | None, now_ms: int, limits: DecodeLimits
) -> Decoded[ChatEvent] | Rejection:
    try:
        envelope, data = _open(value, CHAT_EVENT_TYPES, limits)
        return _chat_event(envelope, data, decode_key(key), now_ms, limits)
    except _Reject as reject:
        return reject.rejection


def decode_agent(key: bytes | None, value: bytes, limits: DecodeLimits) -> AgentSnapshot | Rejection:
    # Agents have no repairable field: a snapshot is all ids, flags and device tokens.
    try:
        _, data = _open(value, _AGENT_TYPES, limits)
        assert isinstance(data, _AgentData)
        if decode_key(key) != data.agent_id:
            raise _reject(
                Reason.KEY_MISMATCH, "record key differs from data.agent_id", agent_id=data.agent_id
            )
        device_ids = [device.device_id for device in data.devices]
        if len(set(device_ids)) != len(device_ids):
            raise _reject(Reason.BAD_DATA, "duplicate device_id in devices", agent_id=data.agent_id)
        return AgentSnapshot(
            agent_id=data.agent_id,
            account_id=data.account_id,
            live_chat_available=data.live_chat_available,
            push_enabled_by_site={toggle.site_id: toggle.push_enabled for toggle in data.sites},
            devices=tuple(
                Device(
                    device.device_id,
                    Provider(device.provider),
                    device.token,
                    ApnsEnvironment(device.apns_environment),
                )
                for device in data.devices
            ),
        )
    except _Reject as reject:
        return reject.rejection


def decode_site(key: bytes | None, value: bytes, limits: DecodeLimits) -> Decoded[SiteSnapshot] | Rejection:
    try:
        _, data = _open(value, _SITE_TYPES, limits)
        assert isinstance(data, _SiteData)
        if decode_key(key) != data.site_id:
            raise _reject(Reason.KEY_MISMATCH, "record key differs from data.site_id", site_id=data.site_id)
        return _site(data, limits)
    except _Reject as reject:
        return reject.rejection


def _site(data: _SiteData, limits: DecodeLimits) -> Decoded[SiteSnapshot]:
    """The snapshot with every unusable optional field repaired.

    Absent or null `time_to_accept_seconds`, `contact`, `contact.email`, `contact.phone` and
    `missed_message` are valid (the contract makes them optional) and not reported. A name that
    is missing, empty or not a string is dropped (alerts and texts then go without it), one too
    long is truncated. A time to accept above the maximum is clamped to it; zero, negative or not
    an integer is dropped, so the worker's default applies (clamping 0 up to 1 s would miss every
    request of the site at once). A contact detail out of its length bounds is dropped, not cut
    (a cut address reaches nobody); so is an over-long `missed_message`, whose cut would lose the
    contact details it was written to give: the default text, which names them, applies instead.
    """
    repairs: list[Repair] = []
    name = _optional(data.name, _OPTIONAL_STR, _F.NAME, repairs)
    if not name:  # the contract requires a name: missing, null or empty is reported too
        if not repairs:  # (once: `_optional` already reported a name of the wrong type)
            repairs.append(Repair(_F.NAME, _A.DROPPED))
        name = None
    elif len(name) > MAX_SITE_NAME_CHARS:
        repairs.append(Repair(_F.NAME, _A.TRUNCATED))
        name = truncated(name, MAX_SITE_NAME_CHARS)
    time_to_accept_s = _optional(data.time_to_accept_seconds, _OPTIONAL_INT, _F.TIME_TO_ACCEPT, repairs)
    if time_to_accept_s is not None and time_to_accept_s > limits.max_time_to_accept_s:
        repairs.append(Repair(_F.TIME_TO_ACCEPT, _A.CLAMPED))
        time_to_accept_s = limits.max_time_to_accept_s
    elif time_to_accept_s is not None and time_to_accept_s <= 0:
        repairs.append(Repair(_F.TIME_TO_ACCEPT, _A.DROPPED))
        time_to_accept_s = None
    email = phone = None
    contact = _optional(data.contact, _CONTACT, _F.CONTACT, repairs)
    if contact is not None:
        email = _text(contact.email, _F.CONTACT_EMAIL, EMAIL_CHARS, repairs)
        phone = _text(contact.phone, _F.CONTACT_PHONE, PHONE_CHARS, repairs)
    missed_message = _text(data.missed_message, _F.MISSED_MESSAGE, (0, MAX_TEXT_CHARS), repairs)
    snapshot = SiteSnapshot(
        site_id=data.site_id,
        account_id=data.account_id,
        name=name,
        time_to_accept_s=time_to_accept_s,
        contact_email=email,
        contact_phone=phone,
        missed_message=missed_message or None,
    )
    return Decoded(snapshot, tuple(repairs))


def _optional(
    raw: msgspec.Raw, decoder: msgspec.json.Decoder[_V | None], field: RepairedField, repairs: list[Repair]
) -> _V | None:
    """The raw field decoded, or None (recorded as dropped) when it is of the wrong type."""
    try:
        return decoder.decode(raw)
    except (msgspec.ValidationError, RecursionError):
        repairs.append(Repair(field, _A.DROPPED))
        return None


def _text(
    raw: msgspec.Raw, field: RepairedField, chars: tuple[int, int], repairs: list[Repair]
) -> str | None:
    """An optional text: None when absent or null, and (recorded as dropped) when it is not a
    string or its length is outside `chars`."""
    text = _optional(raw, _OPTIONAL_STR, field, repairs)
    if text is not None and not chars[0] <= len(text) <= chars[1]:
        repairs.append(Repair(field, _A.DROPPED))
        return None
    return text


def decode_key(key: bytes | None) -> str | None:
    """The record key as text, or None when it is absent or not UTF-8."""
    if key is None:
        return None
    try:
        return key.decode()
    except UnicodeDecodeError:
        return None


def _open(value: bytes | None, types: frozenset[str], limits: DecodeLimits) -> tuple[_Envelope, object]:
    if value is None:
        raise _reject(Reason.NULL_VALUE, "record value is null")
    if len(value) > limits.max_value_bytes:
        raise _reject(Reason.TOO_LARGE, f"value of {len(value)} bytes exceeds {limits.max_value_bytes}")
    try:
        value.decode()
    except UnicodeDecodeError as error:
        raise _reject(Reason.NOT_UTF8, f"value is not UTF-8 at byte {error.start}") from None
    envelope = _envelope(value)
    if envelope.specversion != "1.0":
        raise _reject(Reason.BAD_SPECVERSION, "specversion must be '1.0'")
    if envelope.type not in types:
        raise _reject(Reason.UNKNOWN_TYPE, f"type {envelope.type[:100]!r} is not consumed from this topic")
    try:
        data = _DATA_DECODERS[envelope.type].decode(envelope.data)
    except msgspec.ValidationError as error:
        loose = _LOOSE_DECODERS.get(envelope.type)
        if loose is None:
            raise _reject(Reason.BAD_DATA, f"{envelope.type}: {_validation_message(error)}") from None
        try:  # an optional field may be what failed: decode once more with those kept raw
            data = loose.decode(envelope.data)
        except msgspec.ValidationError as loose_error:
            raise _reject(Reason.BAD_DATA, f"{envelope.type}: {_validation_message(loose_error)}") from None
    except RecursionError:
        raise _reject(Reason.TOO_DEEP, f"{envelope.type}: data is nested too deeply to decode") from None
    return envelope, data


def _envelope(value: bytes) -> _Envelope:
    try:
        return _ENVELOPE.decode(value)
    except msgspec.ValidationError as error:
        message = _validation_message(error)
        if message.startswith("Expected `object`") and " - at `$" not in message:
            raise _reject(Reason.NOT_AN_OBJECT, f"value is not a JSON object: {message}") from None
        raise _reject(Reason.BAD_ENVELOPE, f"CloudEvents envelope: {message}") from None
    except msgspec.DecodeError as error:
        raise _reject(Reason.INVALID_JSON, f"value is not JSON: {error}") from None
    except RecursionError:  # msgspec recurses even to skip a value (`data` is kept raw)
        raise _reject(Reason.TOO_DEEP, "value is nested too deeply to decode") from None


def _validation_message(error: msgspec.ValidationError) -> str:
    """The message of msgspec without the offending value, which it quotes for enums (a token, say)."""
    message = str(error)
    if message.startswith("Invalid enum value "):
        _, at, path = message.rpartition(" - at `")
        return f"Invalid enum value - at `{path}" if at else "Invalid enum value"
    return message


def _chat_event(
    envelope: _Envelope, data: object, key: str | None, now_ms: int, limits: DecodeLimits
) -> Decoded[ChatEvent]:
    assert isinstance(data, _HandoffData | _LooseHandoffData | _JoinedData | _EndedData)
    ids = {"chat_id": data.chat_id, "site_id": data.site_id}
    if key != data.chat_id:
        raise _reject(Reason.KEY_MISMATCH, "record key differs from data.chat_id", **ids)
    if isinstance(data, _HandoffData | _LooseHandoffData):
        return _handoff(envelope, data, now_ms, limits, ids)
    if isinstance(data, _JoinedData):
        return Decoded(
            AgentJoined(
                event_id=envelope.id,
                chat_id=data.chat_id,
                site_id=data.site_id,
                agent_id=data.agent_id,
                joined_at_ms=_event_time(data.joined_at, "joined_at", now_ms, limits, ids),
            )
        )
    return Decoded(
        ChatEnded(
            event_id=envelope.id,
            chat_id=data.chat_id,
            site_id=data.site_id,
            ended_at_ms=_event_time(data.ended_at, "ended_at", now_ms, limits, ids),
            reason=data.reason,
        )
    )


def _handoff(
    envelope: _Envelope,
    data: _HandoffData | _LooseHandoffData,
    now_ms: int,
    limits: DecodeLimits,
    ids: dict[str, str],
) -> Decoded[ChatEvent]:
    """The request, served whatever its optional fields hold: a visitor that is not an object or
    a name that is not a string is ignored, a name too long truncated, and an override of the
    time to accept that is not an integer in 1..max ignored, so the site's setting applies (a
    wrong override is a producer's bug; the site's setting is what its owner chose)."""
    repairs: list[Repair] = []
    if isinstance(data, _HandoffData):
        visitor_name = data.visitor.name if data.visitor else None
        tta = data.time_to_accept_seconds
    else:
        visitor = _optional(data.visitor, _VISITOR, _F.VISITOR, repairs)
        visitor_name = _optional(visitor.name, _OPTIONAL_STR, _F.VISITOR_NAME, repairs) if visitor else None
        if visitor_name is not None and len(visitor_name) > MAX_TEXT_CHARS:
            repairs.append(Repair(_F.VISITOR_NAME, _A.TRUNCATED))
            visitor_name = truncated(visitor_name, MAX_TEXT_CHARS)
        tta = _optional(data.time_to_accept_seconds, _OPTIONAL_INT, _F.TIME_TO_ACCEPT, repairs)
    if tta is not None and not 0 < tta <= limits.max_time_to_accept_s:
        repairs.append(Repair(_F.TIME_TO_ACCEPT, _A.DROPPED))
        tta = None
    event = HandoffRequested(
        event_id=envelope.id,
        chat_id=data.chat_id,
        site_id=data.site_id,
        requested_at_ms=_event_time(data.requested_at, "requested_at", now_ms, limits, ids),
        visitor_name=visitor_name,
        time_to_accept_s=tta,
    )
    return Decoded(event, tuple(repairs))


def _event_time(at: datetime, field: str, now_ms: int, limits: DecodeLimits, ids: dict[str, str]) -> int:
    at_ms = int(at.timestamp() * 1000)
    if at_ms > now_ms + limits.clock_skew_ms:
        raise _reject(Reason.BAD_TIMESTAMP, f"{field} lies {at_ms - now_ms} ms in the future", **ids)
    if at_ms < now_ms - limits.max_event_age_ms:
        raise _reject(Reason.BAD_TIMESTAMP, f"{field} is older than {limits.max_event_age_ms} ms", **ids)
    return at_ms


def _reject(reason: Reason, detail: str, **ids: str) -> _Reject:
    if len(detail) > MAX_DETAIL_CHARS:  # it becomes a log field and a dead-letter header
        detail = detail[: MAX_DETAIL_CHARS - 1] + "…"
    return _Reject(Rejection(reason, detail, **ids))
