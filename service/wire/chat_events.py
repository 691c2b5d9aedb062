"""Decode a record of the chat-events topic (`handoff_requested`, `agent_joined`, `ended`) into a
domain `ChatEvent`, or into a `Rejection`.

This is the worker's hot path: nearly every consumed record comes through here. So a request is
decoded strictly first, straight from bytes into typed structs with every optional field checked
by msgspec; only when that fails is it decoded once more with its optional fields kept raw, each
then repaired on its own (`repair.py`). Joins and ends have no repairable field. Only what makes a
record unusable rejects it: its ids, its event time, its envelope.
"""

from __future__ import annotations

from datetime import datetime
from typing import assert_never

import msgspec

from service.domain.events import AgentJoined, ChatEnded, ChatEvent, HandoffRequested
from service.wire.envelope import (
    MAX_TEXT_CHARS,
    DataDecoders,
    DecodeLimits,
    Envelope,
    Id,
    Rejected,
    Text,
    Timestamp,
    decode_key,
    open_record,
    reject,
)
from service.wire.rejection import Reason, Rejection
from service.wire.repair import (
    ABSENT,
    OPTIONAL_INT,
    OPTIONAL_STR,
    Decoded,
    Repair,
    RepairAction,
    RepairedField,
    optional,
    truncated,
)

HANDOFF_REQUESTED = "livechat.chat.handoff_requested"
AGENT_JOINED = "livechat.chat.agent_joined"
CHAT_ENDED = "livechat.chat.ended"
CHAT_EVENT_TYPES = frozenset({HANDOFF_REQUESTED, AGENT_JOINED, CHAT_ENDED})
EVENT_TYPE_NAMES: dict[type[ChatEvent], str] = {
    HandoffRequested: HANDOFF_REQUESTED,
    AgentJoined: AGENT_JOINED,
    ChatEnded: CHAT_ENDED,
}

HANDOFF_REPAIRS = (
    Repair(RepairedField.VISITOR, RepairAction.DROPPED),
    Repair(RepairedField.VISITOR_NAME, RepairAction.TRUNCATED),
    Repair(RepairedField.VISITOR_NAME, RepairAction.DROPPED),
    Repair(RepairedField.TIME_TO_ACCEPT, RepairAction.DROPPED),
)
"""Every repair `decode_chat_event` can make to a request."""


class _Visitor(msgspec.Struct, frozen=True):
    name: Text | None = None


class _HandoffData(msgspec.Struct, frozen=True):
    chat_id: Id
    site_id: Id
    requested_at: Timestamp
    visitor: _Visitor | None = None
    time_to_accept_seconds: int | None = None


class _LooseHandoffData(msgspec.Struct, frozen=True):
    """A request whose strict decoding failed: required fields strict, optional ones kept raw."""

    chat_id: Id
    site_id: Id
    requested_at: Timestamp
    visitor: msgspec.Raw = ABSENT
    time_to_accept_seconds: msgspec.Raw = ABSENT


class _LooseVisitor(msgspec.Struct, frozen=True):
    name: msgspec.Raw = ABSENT  # the visitor's other fields are skipped, never decoded


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


_ChatData = _HandoffData | _LooseHandoffData | _JoinedData | _EndedData
_STRICT: DataDecoders = {
    HANDOFF_REQUESTED: msgspec.json.Decoder(_HandoffData),
    AGENT_JOINED: msgspec.json.Decoder(_JoinedData),
    CHAT_ENDED: msgspec.json.Decoder(_EndedData),
}
_LENIENT: DataDecoders = {HANDOFF_REQUESTED: msgspec.json.Decoder(_LooseHandoffData)}
_VISITOR = msgspec.json.Decoder(_LooseVisitor | None)


def decode_chat_event(
    key: bytes | None, value: bytes | None, now_ms: int, limits: DecodeLimits
) -> Decoded[ChatEvent] | Rejection:
    try:
        envelope, data = open_record(value, _STRICT, limits, _LENIENT)
        return _chat_event(envelope, data, decode_key(key), now_ms, limits)
    except Rejected as rejected:
        return rejected.rejection


def _chat_event(
    envelope: Envelope, data: object, key: str | None, now_ms: int, limits: DecodeLimits
) -> Decoded[ChatEvent]:
    assert isinstance(data, _ChatData)
    ids = {"chat_id": data.chat_id, "site_id": data.site_id}
    if key != data.chat_id:
        raise reject(Reason.KEY_MISMATCH, "record key differs from data.chat_id", **ids)
    match data:
        case _HandoffData() | _LooseHandoffData():
            return _handoff(envelope, data, now_ms, limits, ids)
        case _JoinedData():
            return Decoded(
                AgentJoined(
                    event_id=envelope.id,
                    chat_id=data.chat_id,
                    site_id=data.site_id,
                    agent_id=data.agent_id,
                    joined_at_ms=_event_time(data.joined_at, "joined_at", now_ms, limits, ids),
                )
            )
        case _EndedData():
            return Decoded(
                ChatEnded(
                    event_id=envelope.id,
                    chat_id=data.chat_id,
                    site_id=data.site_id,
                    ended_at_ms=_event_time(data.ended_at, "ended_at", now_ms, limits, ids),
                    reason=data.reason,
                )
            )
        case _:
            assert_never(data)


def _handoff(
    envelope: Envelope,
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
    if isinstance(data, _HandoffData):  # the fast path: msgspec checked every field
        visitor_name = data.visitor.name if data.visitor else None
        tta = data.time_to_accept_seconds
    else:
        visitor = optional(data.visitor, _VISITOR, RepairedField.VISITOR, repairs)
        visitor_name = (
            optional(visitor.name, OPTIONAL_STR, RepairedField.VISITOR_NAME, repairs) if visitor else None
        )
        if visitor_name is not None and len(visitor_name) > MAX_TEXT_CHARS:
            repairs.append(Repair(RepairedField.VISITOR_NAME, RepairAction.TRUNCATED))
            visitor_name = truncated(visitor_name, MAX_TEXT_CHARS)
        tta = optional(data.time_to_accept_seconds, OPTIONAL_INT, RepairedField.TIME_TO_ACCEPT, repairs)
    if tta is not None and not 0 < tta <= limits.max_time_to_accept_s:
        repairs.append(Repair(RepairedField.TIME_TO_ACCEPT, RepairAction.DROPPED))
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
        raise reject(Reason.BAD_TIMESTAMP, f"{field} lies {at_ms - now_ms} ms in the future", **ids)
    if at_ms < now_ms - limits.max_event_age_ms:
        raise reject(Reason.BAD_TIMESTAMP, f"{field} is older than {limits.max_event_age_ms} ms", **ids)
    return at_ms
