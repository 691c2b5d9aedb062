"""Restore reads a changelog partition up to the end offset it took, not past it."""

from __future__ import annotations

from typing import NamedTuple

from service.kafka.restore import before


class Record(NamedTuple):
    offset: int


def test_a_batch_is_cut_at_the_end_offset() -> None:
    batch = [Record(7), Record(8), Record(9)]
    assert before(batch, 10) is batch
    assert before(batch, 9) == [Record(7), Record(8)]
    assert before(batch, 7) == []
    assert before([], 7) == []
