"""Changelog records: one per chat, keyed by chat id, in a compacted topic co-partitioned with
the chat events. A pending round or a closed round's memory is the value; a tombstone forgets.

MessagePack arrays (msgspec `array_like`) keep a record at roughly 100-200 bytes, which matters
when a million pending rounds are replayed at start-up. The first element is a tag, so the
format can grow new record kinds without breaking old readers' ability to fail loudly.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from service.domain.rounds import ChatState, ClosedRound, DeviceRef, Outcome, PendingRound


class _Pending(msgspec.Struct, array_like=True, tag="p"):
    request_id: str
    chat_id: str
    site_id: str
    requested_at_ms: int
    deadline_ms: int
    targets: tuple[DeviceRef, ...]
    delivered: tuple[DeviceRef, ...] | None
    visitor_name: str | None


class _Closed(msgspec.Struct, array_like=True, tag="c"):
    request_id: str
    chat_id: str
    outcome: Literal["accepted", "ended", "missed"]
    closed_at_ms: int
    forget_at_ms: int


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_Pending | _Closed)


def encode_state(state: ChatState) -> bytes:
    if isinstance(state, PendingRound):
        return _ENCODER.encode(
            _Pending(
                state.request_id,
                state.chat_id,
                state.site_id,
                state.requested_at_ms,
                state.deadline_ms,
                state.targets,
                state.delivered,
                state.visitor_name,
            )
        )
    return _ENCODER.encode(
        _Closed(state.request_id, state.chat_id, state.outcome.value, state.closed_at_ms, state.forget_at_ms)
    )


def decode_state(value: bytes) -> ChatState:
    """Decode a changelog value; raises msgspec.DecodeError on a record this version cannot read."""
    record = _DECODER.decode(value)
    if isinstance(record, _Pending):
        return PendingRound(
            request_id=record.request_id,
            chat_id=record.chat_id,
            site_id=record.site_id,
            requested_at_ms=record.requested_at_ms,
            deadline_ms=record.deadline_ms,
            targets=record.targets,
            delivered=record.delivered,
            visitor_name=record.visitor_name,
        )
    return ClosedRound(
        record.request_id, record.chat_id, Outcome(record.outcome), record.closed_at_ms, record.forget_at_ms
    )
