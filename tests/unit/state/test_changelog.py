"""Changelog records round-trip exactly, read what earlier versions wrote, and replay into chat
states that share what repeats; garbage fails loudly."""

from __future__ import annotations

from typing import NamedTuple

import msgspec
import pytest

from service.domain.rounds import ChatState, ClosedRound, DeviceRef, Outcome, PendingRound, RoundExtras
from service.state.changelog import StateReplay, decode_state, encode_state

PHONES = (DeviceRef("agent-1", "phone-1"),)


class Record(NamedTuple):
    key: bytes | None
    value: bytes | None


def record(state: ChatState) -> Record:
    return Record(state.chat_id.encode(), encode_state(state))


def pending(chat_id: str, request_id: str = "r1") -> PendingRound:
    return PendingRound(request_id, chat_id, "site-1", 1, 2, PHONES, PHONES)


@pytest.mark.parametrize(
    "state",
    [
        PendingRound("r", "c", "s", 1, 2, (DeviceRef("a", "d"),), None, "Ada"),
        PendingRound("r", "c", "s", 1, 2, (DeviceRef("a", "d"), DeviceRef("b", "e")), (DeviceRef("b", "e"),)),
        PendingRound("r", "c", "s", 1, 2, (), ()),
        PendingRound(
            "r", "c", "s", 1, 5, (DeviceRef("a", "d"),), None, "Ada", extras=RoundExtras(reminder_at_ms=3)
        ),
        PendingRound(
            "r",
            "c",
            "s",
            1,
            5,
            (DeviceRef("a", "d"),),
            (),
            extras=RoundExtras(failed=(DeviceRef("a", "d"),)),
        ),
        ClosedRound("r", "c", Outcome.MISSED, 3, 4),
    ],
)
def test_round_trip(state: PendingRound | ClosedRound) -> None:
    assert decode_state(encode_state(state)) == state


def test_pending_round_record_is_small() -> None:
    state = PendingRound(
        "evt-0123456789", "chat-0123456789", "site-1", 1_800_000_000_000, 1_800_000_120_000, ()
    )
    assert len(encode_state(state)) < 100


def test_unknown_record_raises() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_state(b"\x93\xa1x\x01\x02")


# Values as the changelog's first format wrote them (msgspec array_like structs, `outcome` a
# plain string): whatever this version changes in the code, these must still restore, and new
# records must keep this layout.
WRITTEN_BEFORE = [
    (
        (
            b"\x99\xa1p\xa5req-1\xa6chat-1\xa6site-1\xcf\x00\x00\x01\xa3\x18\\P\x00\xcf\x00\x00\x01\xa3\x18^$"
            b"\xc0\x92\x92\xa7agent-1\xa7phone-1\x92\xa7agent-2\xa7phone-2\xc0\xa3Ada"
        ),
        PendingRound(
            "req-1",
            "chat-1",
            "site-1",
            1_800_000_000_000,
            1_800_000_120_000,
            (DeviceRef("agent-1", "phone-1"), DeviceRef("agent-2", "phone-2")),
            None,
            "Ada",
        ),
    ),
    (
        (
            b"\x99\xa1p\xa5req-2\xa6chat-2\xa6site-1\xcf\x00\x00\x01\xa3\x18\\P\x00\xcf\x00\x00\x01\xa3\x18^$"
            b"\xc0\x92\x92\xa7agent-1\xa7phone-1\x92\xa7agent-2\xa7phone-2\x91\x92\xa7agent-2\xa7phone-2\xc0"
        ),
        PendingRound(
            "req-2",
            "chat-2",
            "site-1",
            1_800_000_000_000,
            1_800_000_120_000,
            (DeviceRef("agent-1", "phone-1"), DeviceRef("agent-2", "phone-2")),
            (DeviceRef("agent-2", "phone-2"),),
        ),
    ),
    (
        b"\x96\xa1c\xa5req-3\xa6chat-3\xa6missed\xcf\x00\x00\x01\xa3\x18^$\xc1\xcf\x00\x00\x01\xa3\xee\xf1\xc8\xc1",
        ClosedRound("req-3", "chat-3", Outcome.MISSED, 1_800_000_120_001, 1_803_600_120_001),
    ),
]


@pytest.mark.parametrize(("value", "state"), WRITTEN_BEFORE)
def test_records_of_the_first_format_restore_and_are_written_the_same(
    value: bytes, state: PendingRound | ClosedRound
) -> None:
    assert decode_state(value) == state
    replay = StateReplay()
    replay.apply([Record(state.chat_id.encode(), value)])
    assert replay.states == {state.chat_id: state}
    assert encode_state(state) == value


# A record as #10's layout (`_PendingV2`) wrote it, before #12 added trailing fields.
WRITTEN_BY_10 = (
    b"\x9d\xa1p\xa5req-4\xa6chat-4\xa6site-1\xcf\x00\x00\x01\xa3\x18\\P\x00\xcf\x00\x00\x01\xa3\x18^$\xc0"
    b"\x92\x92\xa7agent-1\xa7phone-1\x92\xa7agent-2\xa7phone-2\x91\x92\xa7agent-1\xa7phone-1\xc0"
    b"\x91\x92\xa7agent-2\xa7phone-2\x90\xcf\x00\x00\x01\xa3\x18\\L\x18\xc2"
)
ROUND_OF_10 = PendingRound(
    "req-4",
    "chat-4",
    "site-1",
    1_800_000_000_000,
    1_800_000_120_000,
    (DeviceRef("agent-1", "phone-1"), DeviceRef("agent-2", "phone-2")),
    (DeviceRef("agent-1", "phone-1"),),
    None,
    unsure=(DeviceRef("agent-2", "phone-2"),),
    extras=RoundExtras(claimed_at_ms=1_799_999_999_000),
)


def test_records_of_the_issue_10_format_restore_and_are_written_the_same() -> None:
    assert decode_state(WRITTEN_BY_10) == ROUND_OF_10
    assert encode_state(ROUND_OF_10) == WRITTEN_BY_10


@pytest.mark.parametrize(
    "extra",
    [
        {"reminder_at_ms": 1_800_000_060_000},
        {"rejected": (DeviceRef("agent-2", "phone-2"),)},
        {"failed": (DeviceRef("agent-2", "phone-2"),), "rejected": (DeviceRef("agent-1", "phone-1"),)},
    ],
)
def test_issue_12_fields_are_written_after_issue_10s_and_only_when_set(extra: dict[str, object]) -> None:
    extras = msgspec.structs.replace(RoundExtras(claimed_at_ms=1_799_999_999_000), **extra)
    state = msgspec.structs.replace(ROUND_OF_10, extras=extras)
    value = encode_state(state)
    # A 16-element array (tag, the 8 first fields, #10's 4, #12's 3): past fixarray's 15, so array16.
    assert value[:3] == b"\xdc\x00\x10"
    assert value[3 : 3 + len(WRITTEN_BY_10) - 1] == WRITTEN_BY_10[1:], "the older fields keep their bytes"
    assert decode_state(value) == state
    replay = StateReplay()
    replay.apply([Record(b"chat-4", value)])
    assert replay.states == {"chat-4": state}


def test_a_finished_fan_out_restores_without_the_visitor_name() -> None:
    devices = (DeviceRef("a", "d"),)
    written = encode_state(PendingRound("r", "c", "s", 1, 2, devices, devices, "Ada"))
    assert decode_state(written) == PendingRound("r", "c", "s", 1, 2, devices, devices, None)


def test_replay_keeps_the_last_record_of_a_chat_and_a_tombstone_forgets() -> None:
    closed = ClosedRound("r1", "a", Outcome.ACCEPTED, 3, 4)
    replay = StateReplay()
    replay.apply([record(pending("a")), record(pending("b")), record(pending("c"))])
    replay.apply([record(closed), Record(b"b", None)])
    assert replay.states == {"a": closed, "c": pending("c")}
    assert (replay.unreadable, replay.last_error) == (0, None)


def test_replay_counts_and_skips_unreadable_records() -> None:
    replay = StateReplay()
    replay.apply(
        [
            Record(None, encode_state(pending("a"))),
            Record(b"b", b"\x93\xa1x\x01\x02"),
            Record(b"c", b"not msgpack at all \xc1"),
            record(pending("d")),
        ]
    )
    assert replay.states == {"d": pending("d")}
    assert replay.unreadable == 3
    assert isinstance(replay.last_error, msgspec.DecodeError)


def test_replayed_states_share_device_lists_devices_site_ids_and_the_key() -> None:
    first, second = DeviceRef("agent-1", "phone-1"), DeviceRef("agent-2", "phone-2")
    replay = StateReplay()
    replay.apply([record(PendingRound("r1", "chat-1", "site-1", 1, 2, (first, second), None))])
    replay.apply(
        [
            record(PendingRound("r2", "chat-2", "site-1", 1, 2, (first, second), (first, second))),
            record(PendingRound("r3", "chat-3", "site-1", 1, 2, (second,), (second,))),
            record(PendingRound("r4", "chat-4", "site-1", 1, 2, (first, second), (second,))),
        ]
    )
    a, b, c, d = (replay.states[f"chat-{i}"] for i in range(1, 5))
    assert isinstance(a, PendingRound) and isinstance(b, PendingRound)
    assert isinstance(c, PendingRound) and isinstance(d, PendingRound)
    assert a.targets is b.targets is b.delivered is d.targets
    assert c.targets is c.delivered is d.delivered
    assert c.targets[0] is a.targets[1]
    assert a.site_id is b.site_id is c.site_id
    assert all(chat_id is state.chat_id for chat_id, state in replay.states.items())


def test_replay_past_its_table_bound_still_reads_correctly() -> None:
    replay = StateReplay(max_shared=1)
    states = [
        PendingRound(f"r{i}", f"c{i}", "s", 1, 2, (DeviceRef(f"a{i % 3}", "d"),), (DeviceRef("a0", "d"),))
        for i in range(7)
    ]
    replay.apply([record(state) for state in states])
    assert list(replay.states.values()) == states


def test_a_chat_id_unlike_the_key_is_kept_as_written() -> None:
    state = ClosedRound("r", "c", Outcome.ENDED, 3, 4)
    replay = StateReplay()
    replay.apply([Record(b"another-key", encode_state(state))])
    assert replay.states == {"another-key": state}


@pytest.mark.parametrize(
    "value",
    [
        b"\x99\xa1p\xa1r\xa1c\xa1s\x01\x02\xc0\xc0\xc0",  # targets nil
        b"\x99\xa1p\xa1r\xa1c\xa1s\x01\x02\x91\x01\xc0\xc0",  # a device that is not a pair of strings
        b"\x99\xa1p\xa1r\xa1c\xa1s\x01\x02\x90\x91\x92\xa1a\x05\xc0",  # a delivered device likewise
        b"\x96\xa1c\xa1r\xa1c\xa4lost\x01\x02",  # an outcome this version does not know
        b"\x99\xa1p\xa1r",  # truncated
    ],
)
def test_malformed_records_raise(value: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_state(value)
