"""Decode consumed records into domain values, or into a typed `Rejection` — never an exception.

Two steps: the CloudEvents envelope (with `data` kept raw), then `data` by `type` into a
msgspec schema that checks types and bounds. msgspec was picked over pydantic for this hot path
because it validates straight from bytes into typed structs several times faster, which is what
lets one worker keep up with tens of thousands of events per second.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

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
from service.push.base import ApnsEnvironment, Provider
from service.wire.rejection import Reason, Rejection

HANDOFF_REQUESTED = "livechat.chat.handoff_requested"
AGENT_JOINED = "livechat.chat.agent_joined"
CHAT_ENDED = "livechat.chat.ended"
AGENT_UPDATED = "livechat.agent.updated"
SITE_UPDATED = "livechat.site.updated"

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Text = Annotated[str, msgspec.Meta(max_length=1000)]
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


class _Contact(msgspec.Struct, frozen=True):
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=320)]
    phone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class _SiteData(msgspec.Struct, frozen=True):
    site_id: Id
    account_id: Id
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    time_to_accept_seconds: int
    contact: _Contact
    missed_message: Text | None = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_DATA_DECODERS: dict[str, msgspec.json.Decoder[object]] = {
    HANDOFF_REQUESTED: msgspec.json.Decoder(_HandoffData),
    AGENT_JOINED: msgspec.json.Decoder(_JoinedData),
    CHAT_ENDED: msgspec.json.Decoder(_EndedData),
    AGENT_UPDATED: msgspec.json.Decoder(_AgentData),
    SITE_UPDATED: msgspec.json.Decoder(_SiteData),
}
CHAT_EVENT_TYPES = frozenset({HANDOFF_REQUESTED, AGENT_JOINED, CHAT_ENDED})
_AGENT_TYPES = frozenset({AGENT_UPDATED})
_SITE_TYPES = frozenset({SITE_UPDATED})


EVENT_TYPE_NAMES: dict[type[ChatEvent], str] = {
    HandoffRequested: HANDOFF_REQUESTED,
    AgentJoined: AGENT_JOINED,
    ChatEnded: CHAT_ENDED,
}


class _Reject(Exception):  # noqa: N818 -- internal control flow, converted to Rejection at the boundary
    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.detail)
        self.rejection = rejection


def decode_chat_event(
    key: bytes | None, value: bytes | None, now_ms: int, limits: DecodeLimits
) -> ChatEvent | Rejection:
    try:
        envelope, data = _open(value, CHAT_EVENT_TYPES, limits)
        return _chat_event(envelope, data, decode_key(key), now_ms, limits)
    except _Reject as reject:
        return reject.rejection


def decode_agent(key: bytes | None, value: bytes, limits: DecodeLimits) -> AgentSnapshot | Rejection:
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


def decode_site(key: bytes | None, value: bytes, limits: DecodeLimits) -> SiteSnapshot | Rejection:
    try:
        _, data = _open(value, _SITE_TYPES, limits)
        assert isinstance(data, _SiteData)
        if decode_key(key) != data.site_id:
            raise _reject(Reason.KEY_MISMATCH, "record key differs from data.site_id", site_id=data.site_id)
        if not 0 < data.time_to_accept_seconds <= limits.max_time_to_accept_s:
            raise _reject(
                Reason.BAD_DATA,
                f"time_to_accept_seconds must be in 1..{limits.max_time_to_accept_s}",
                site_id=data.site_id,
            )
        return SiteSnapshot(
            site_id=data.site_id,
            account_id=data.account_id,
            name=data.name,
            time_to_accept_s=data.time_to_accept_seconds,
            contact_email=data.contact.email,
            contact_phone=data.contact.phone,
            missed_message=data.missed_message,
        )
    except _Reject as reject:
        return reject.rejection


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
        raise _reject(Reason.BAD_DATA, f"{envelope.type}: {_validation_message(error)}") from None
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
) -> ChatEvent:
    assert isinstance(data, _HandoffData | _JoinedData | _EndedData)
    ids = {"chat_id": data.chat_id, "site_id": data.site_id}
    if key != data.chat_id:
        raise _reject(Reason.KEY_MISMATCH, "record key differs from data.chat_id", **ids)
    if isinstance(data, _HandoffData):
        tta = data.time_to_accept_seconds
        if tta is not None and not 0 < tta <= limits.max_time_to_accept_s:
            raise _reject(
                Reason.BAD_DATA, f"time_to_accept_seconds must be in 1..{limits.max_time_to_accept_s}", **ids
            )
        return HandoffRequested(
            event_id=envelope.id,
            chat_id=data.chat_id,
            site_id=data.site_id,
            requested_at_ms=_event_time(data.requested_at, "requested_at", now_ms, limits, ids),
            visitor_name=data.visitor.name if data.visitor else None,
            time_to_accept_s=tta,
        )
    if isinstance(data, _JoinedData):
        return AgentJoined(
            event_id=envelope.id,
            chat_id=data.chat_id,
            site_id=data.site_id,
            agent_id=data.agent_id,
            joined_at_ms=_event_time(data.joined_at, "joined_at", now_ms, limits, ids),
        )
    return ChatEnded(
        event_id=envelope.id,
        chat_id=data.chat_id,
        site_id=data.site_id,
        ended_at_ms=_event_time(data.ended_at, "ended_at", now_ms, limits, ids),
        reason=data.reason,
    )


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
