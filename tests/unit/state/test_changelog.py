"""Changelog records round-trip exactly; garbage fails loudly."""

from __future__ import annotations

import msgspec
import pytest

from service.domain.rounds import ClosedRound, DeviceRef, Outcome, PendingRound
from service.state.changelog import decode_state, encode_state


@pytest.mark.parametrize(
    "state",
    [
        PendingRound("r", "c", "s", 1, 2, (DeviceRef("a", "d"),), None, "Ada"),
        PendingRound("r", "c", "s", 1, 2, (DeviceRef("a", "d"), DeviceRef("b", "e")), (DeviceRef("b", "e"),)),
        PendingRound("r", "c", "s", 1, 2, (), ()),
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
