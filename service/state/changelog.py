"""Changelog records: one per chat, keyed by chat id, in a compacted topic co-partitioned with
the chat events. A pending round or a closed round's memory is the value; a tombstone forgets.

MessagePack arrays (msgspec `array_like`) keep a record at roughly 100-200 bytes, which matters
when a million pending rounds are replayed at start-up. The first element is a tag, so the
format can grow new record kinds without breaking old readers' ability to fail loudly.

A restore replays the records through one `StateReplay`, which decodes the device lists as raw
MessagePack and keeps one tuple per distinct list: rounds of a site mostly name the same
devices, and sharing them is most of what a held round would otherwise cost (measured with
`python -m benchmarks.capacity sites`). The layout is declared twice, for writing (`_Pending` and
its trailing extensions `_PendingV2`, `_PendingV3`) and for reading (`_PendingRecord`);
`tests/unit/state/test_changelog.py` pins both to the bytes earlier versions wrote.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import NamedTuple, Protocol, assert_never

import msgspec

from service.domain.rounds import ChatState, ClosedRound, DeviceRef, Outcome, PendingRound, RoundExtras


class _Pending(msgspec.Struct, array_like=True, tag="p"):
    request_id: str
    chat_id: str
    site_id: str
    requested_at_ms: int
    deadline_ms: int
    targets: tuple[DeviceRef, ...]
    delivered: tuple[DeviceRef, ...] | None
    visitor_name: str | None


class _PendingV2(_Pending, array_like=True, tag="p"):
    """Fields added later (issue #10), trailing. Written only when one of them differs from
    its default (msgspec 0.22 writes every field of an array), so most records keep the first
    format's bytes; readers of either format read both (`_PendingRecord`)."""

    unsure: tuple[DeviceRef, ...]
    awaiting: tuple[DeviceRef, ...]
    claimed_at_ms: int
    expired_on_arrival: bool


class _PendingV3(_PendingV2, array_like=True, tag="p"):
    """Fields added by issue #12, trailing, written only when one of them differs from its
    default (then with #10's fields before them); records without them keep the older bytes."""

    reminder_at_ms: int
    rejected: tuple[DeviceRef, ...]
    failed: tuple[DeviceRef, ...]


class _PendingRecord(msgspec.Struct, array_like=True, tag="p", gc=False):
    """`_Pending` as read: the device lists left encoded, to be looked up by their bytes."""

    request_id: str
    chat_id: str
    site_id: str
    requested_at_ms: int
    deadline_ms: int
    targets: msgspec.Raw
    delivered: msgspec.Raw
    visitor_name: str | None
    unsure: tuple[DeviceRef, ...] = ()
    awaiting: tuple[DeviceRef, ...] = ()
    claimed_at_ms: int = -1
    expired_on_arrival: bool = False
    reminder_at_ms: int = -1
    rejected: tuple[DeviceRef, ...] = ()
    failed: tuple[DeviceRef, ...] = ()


class _Closed(msgspec.Struct, array_like=True, tag="c", gc=False):
    request_id: str
    chat_id: str
    outcome: Outcome
    closed_at_ms: int
    forget_at_ms: int
    request_claim_ms: int = -1
    last_event_ms: int = -1
    """The last two were added later (issue #10); written only when not -1, like `_PendingV2`."""


class _ClosedV1(msgspec.Struct, array_like=True, tag="c"):
    request_id: str
    chat_id: str
    outcome: Outcome
    closed_at_ms: int
    forget_at_ms: int


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_PendingRecord | _Closed)
_DEVICES_DECODER = msgspec.msgpack.Decoder(tuple[DeviceRef, ...])
_NIL = msgspec.Raw(b"\xc0")
MAX_SHARED = 100_000
"""Distinct device lists (and devices) a replay remembers; past that it starts over, so a
changelog of all-different lists costs a bounded table on top of the rounds."""


def encode_state(state: ChatState) -> bytes:
    """A record in the oldest layout that holds the state, so readers of that layout still read it."""
    match state:
        case PendingRound():
            first = (
                state.request_id,
                state.chat_id,
                state.site_id,
                state.requested_at_ms,
                state.deadline_ms,
                state.targets,
                state.delivered,
                state.visitor_name,
            )
            second = (state.unsure, state.awaiting, state.claimed_at_ms, state.expired_on_arrival)
            if state.reminder_at_ms != -1 or state.rejected or state.failed:
                return _ENCODER.encode(
                    _PendingV3(*first, *second, state.reminder_at_ms, state.rejected, state.failed)
                )
            if state.unsure or state.awaiting or state.claimed_at_ms != -1 or state.expired_on_arrival:
                return _ENCODER.encode(_PendingV2(*first, *second))
            return _ENCODER.encode(_Pending(*first))
        case ClosedRound():
            first_closed = (
                state.request_id,
                state.chat_id,
                state.outcome,
                state.closed_at_ms,
                state.forget_at_ms,
            )
            if state.request_claim_ms == -1 and state.last_event_ms == -1:
                return _ENCODER.encode(_ClosedV1(*first_closed))
            return _ENCODER.encode(_Closed(*first_closed, state.request_claim_ms, state.last_event_ms))
        case _:
            assert_never(state)


def decode_state(value: bytes) -> ChatState:
    """Decode a changelog value; raises msgspec.DecodeError on a record this version cannot read."""
    replay = StateReplay()
    replay.apply((_Value(value),))
    if replay.last_error is not None:
        raise replay.last_error
    return replay.states[""]


def _extras(decoded: _PendingRecord) -> RoundExtras | None:
    """The round's rarely set fields, None (no object at all) while they are at their defaults."""
    claimed, expired, reminder = decoded.claimed_at_ms, decoded.expired_on_arrival, decoded.reminder_at_ms
    if claimed == -1 and not expired and reminder == -1 and not decoded.rejected and not decoded.failed:
        return None
    return RoundExtras(claimed, expired, reminder, decoded.rejected, decoded.failed)


class ChangelogRecord(Protocol):
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class _Value(NamedTuple):
    value: bytes
    key: bytes = b""


class StateReplay:
    """Replays changelog records into `states`, chat id -> state: the last record per chat wins,
    a tombstone forgets, an unreadable record (no key, or a value this version cannot read) is
    counted and skipped.

    The states share what repeats between them: equal device lists decode to one tuple, a list
    seen for the first time is made of the `DeviceRef`s already seen, site ids are interned, and
    a state keeps the key's string as its chat id. A finished fan-out's round keeps no visitor
    name (only a resumed fan-out words an alert with it), as `PendingRound.with_delivered` does.
    """

    def __init__(self, states: dict[str, ChatState] | None = None, max_shared: int = MAX_SHARED) -> None:
        self.states: dict[str, ChatState] = {} if states is None else states
        self.unreadable = 0
        self.last_error: msgspec.DecodeError | None = None
        self._lists: dict[bytes, tuple[DeviceRef, ...]] = {}
        self._refs: dict[DeviceRef, DeviceRef] = {}
        self._max_shared = max_shared

    def apply(self, records: Iterable[ChangelogRecord]) -> None:
        # A restore runs this body a million times: one function, its names bound locally, since
        # a method call per record was a measurable share of it (docs/benchmarks.md, "Restore loop").
        states, lists, decode, intern = self.states, self._lists, _DECODER.decode, sys.intern
        for record in records:
            key, value = record.key, record.value
            if key is None:
                self.unreadable += 1
                continue
            chat_id = key.decode()
            if value is None:
                states.pop(chat_id, None)
                continue
            try:
                decoded = decode(value)
                if isinstance(decoded, _Closed):
                    states[chat_id] = ClosedRound(
                        decoded.request_id,
                        chat_id if chat_id == decoded.chat_id else decoded.chat_id,
                        decoded.outcome,
                        decoded.closed_at_ms,
                        decoded.forget_at_ms,
                        decoded.request_claim_ms,
                        decoded.last_event_ms,
                    )
                    continue
                # Most records repeat a list seen before, and most rounds reached every target.
                raw_targets, raw_delivered = decoded.targets, decoded.delivered
                encoded = bytes(raw_targets)
                targets = lists.get(encoded)
                if targets is None:
                    targets = self._remember(encoded)
                delivered: tuple[DeviceRef, ...] | None
                if raw_delivered == raw_targets:
                    delivered = targets
                elif raw_delivered == _NIL:
                    delivered = None
                else:
                    encoded = bytes(raw_delivered)
                    delivered = lists.get(encoded)
                    if delivered is None:
                        delivered = self._remember(encoded)
                states[chat_id] = PendingRound(
                    decoded.request_id,
                    chat_id if chat_id == decoded.chat_id else decoded.chat_id,
                    intern(decoded.site_id),
                    decoded.requested_at_ms,
                    decoded.deadline_ms,
                    targets,
                    delivered,
                    decoded.visitor_name if delivered is None or decoded.awaiting else None,
                    decoded.unsure,
                    decoded.awaiting,
                    _extras(decoded),
                )
            except msgspec.DecodeError as error:
                self.unreadable += 1
                self.last_error = error

    def _remember(self, encoded: bytes) -> tuple[DeviceRef, ...]:
        """A device list not seen yet, made of the devices already seen."""
        devices = tuple(map(self._device, _DEVICES_DECODER.decode(encoded)))
        if len(self._lists) >= self._max_shared:
            self._lists.clear()
        self._lists[encoded] = devices
        return devices

    def _device(self, ref: DeviceRef) -> DeviceRef:
        shared = self._refs.get(ref)
        if shared is None:
            shared = DeviceRef(sys.intern(ref.agent_id), sys.intern(ref.device_id))
            if len(self._refs) >= self._max_shared:
                self._refs.clear()
            self._refs[shared] = shared
        return shared
