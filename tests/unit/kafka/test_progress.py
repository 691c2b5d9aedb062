"""The deadline gate's inputs, from what the consumer read: record times, position, stable offset."""

from __future__ import annotations

from dataclasses import dataclass

from service.kafka.progress import Fetched, ReadProgress, trusted_time
from service.partition.records import LOG_APPEND_TIME

TOLERANCE_MS = 30_000
CREATE_TIME = 0


@dataclass(frozen=True)
class Record:
    timestamp: int
    timestamp_type: int = LOG_APPEND_TIME
    offset: int = 0
    topic: str = "livechat.chat-events"
    partition: int = 0
    key: bytes | None = None
    value: bytes | None = None


def test_the_brokers_append_time_is_trusted_as_it_is() -> None:
    assert trusted_time(Record(10_000_000), TOLERANCE_MS) == 10_000_000


def test_a_producers_create_time_is_trusted_only_less_the_clock_tolerance() -> None:
    """A producer clock running ahead must not make the backlog look read up to its future."""
    assert trusted_time(Record(10_000_000, CREATE_TIME), TOLERANCE_MS) == 10_000_000 - TOLERANCE_MS


def test_records_raise_the_read_time_to_their_latest_and_never_lower_it() -> None:
    progress = ReadProgress()
    gate = progress.advance([Record(5_000), Record(9_000), Record(7_000)], None, TOLERANCE_MS)
    assert gate.read_up_to_ms == 9_000
    assert progress.advance([Record(1_000)], None, TOLERANCE_MS).read_up_to_ms == 9_000, (
        "a replayed older record"
    )


def test_a_record_from_a_clock_far_ahead_counts_only_up_to_the_tolerance() -> None:
    progress = ReadProgress()
    gate = progress.advance([Record(100_000, CREATE_TIME)], None, TOLERANCE_MS)
    assert gate.read_up_to_ms == 100_000 - TOLERANCE_MS


def test_without_consumer_facts_the_partition_is_not_caught_up() -> None:
    """Not assigned right now (a member the group dropped) or position unknown (a rebalance)."""
    gate = ReadProgress().advance([], None, TOLERANCE_MS)
    assert (gate.caught_up, gate.read_up_to_ms, gate.stable_read_ms) == (False, -1, -1)


def test_a_position_at_the_stable_offset_is_caught_up_and_dates_the_progress() -> None:
    progress = ReadProgress()
    behind = progress.advance([], Fetched(position=8, stable=10, polled_ms=1_000), TOLERANCE_MS)
    assert (behind.caught_up, behind.stable_read_ms) == (False, -1)
    caught_up = progress.advance([], Fetched(position=10, stable=10, polled_ms=1_100), TOLERANCE_MS)
    assert (caught_up.caught_up, caught_up.stable_read_ms) == (True, 1_100)


def test_no_fetch_response_yet_is_not_caught_up() -> None:
    gate = ReadProgress().advance([], Fetched(position=0, stable=None, polled_ms=None), TOLERANCE_MS)
    assert gate.caught_up is False


def test_stable_offset_samples_become_a_horizon_once_the_position_reaches_them() -> None:
    progress = ReadProgress()
    assert progress.observe(position=5, stable=10, polled_ms=1_000) is False
    assert progress.stable_read_ms == -1, "offsets 5..9 are unread: nothing is known up to t=1000 yet"
    assert progress.observe(position=10, stable=12, polled_ms=1_200) is False
    assert progress.stable_read_ms == 1_000
    assert progress.observe(position=12, stable=12, polled_ms=1_200) is True
    assert progress.stable_read_ms == 1_200
    assert progress.observe(position=12, stable=None, polled_ms=None) is False


def test_lag_is_what_the_last_fetch_made_readable_but_the_position_has_not_reached() -> None:
    progress = ReadProgress()
    progress.observe(position=5, stable=10, polled_ms=1_000)
    assert progress.lag == 5
    progress.observe(position=10, stable=10, polled_ms=1_100)
    assert progress.lag == 0
    progress.observe(position=10, stable=None, polled_ms=None)
    assert progress.lag == 0, "no fetch response known: the last lag stays"
