"""`/readyz` of the chat worker: ready only while every owned partition progresses."""

from __future__ import annotations

from collections.abc import Iterator

from service.kafka.readiness import STALL_AFTER_MS, ready

NOW = 1_000_000


def test_settled_turning_and_every_partition_fetched_recently_is_ready() -> None:
    assert ready(
        settled=True, seconds_since_turn=0.1, now_ms=NOW, last_fetch_ms=[NOW - 10, NOW - STALL_AFTER_MS]
    )


def test_not_ready_before_every_assigned_partition_is_owned_and_restored() -> None:
    assert not ready(settled=False, seconds_since_turn=0.0, now_ms=NOW, last_fetch_ms=[NOW])


def test_a_partition_without_a_fetch_response_for_the_stall_time_makes_it_unready() -> None:
    assert not ready(
        settled=True, seconds_since_turn=0.0, now_ms=NOW, last_fetch_ms=[NOW, NOW - STALL_AFTER_MS - 1]
    )


def test_a_partition_never_fetched_or_not_assigned_right_now_makes_it_unready() -> None:
    assert not ready(settled=True, seconds_since_turn=0.0, now_ms=NOW, last_fetch_ms=[NOW, None])


def test_a_stuck_consumer_loop_is_unready_however_fresh_the_fetches() -> None:
    """The fetcher runs in its own task: fresh fetches say nothing of a loop stuck in a turn."""
    assert ready(settled=True, seconds_since_turn=5.25, now_ms=NOW, last_fetch_ms=[NOW])
    assert not ready(settled=True, seconds_since_turn=5.3, now_ms=NOW, last_fetch_ms=[NOW])


def test_a_worker_owning_no_partition_is_ready_once_settled() -> None:
    """More workers than partitions: the spare one is healthy."""
    assert ready(settled=True, seconds_since_turn=0.0, now_ms=NOW, last_fetch_ms=[])


def test_the_fetch_times_are_not_read_while_unsettled_or_stuck() -> None:
    """The worker reads them from aiokafka getters that assert during a rebalance; they must be
    asked only when the answer depends on them."""

    class Exploding:
        def __iter__(self) -> Iterator[int | None]:
            raise AssertionError("fetch times read")

    assert not ready(settled=False, seconds_since_turn=0.0, now_ms=NOW, last_fetch_ms=Exploding())
    assert not ready(settled=True, seconds_since_turn=60.0, now_ms=NOW, last_fetch_ms=Exploding())


def test_a_loop_holding_records_back_for_the_push_queue_stays_ready_while_it_turns() -> None:
    """Backpressure: no fetch for partitions with records buffered, yet the worker progresses."""
    stale = [NOW - STALL_AFTER_MS - 60_000]
    assert not ready(settled=True, seconds_since_turn=0.1, now_ms=NOW, last_fetch_ms=stale)
    assert ready(
        settled=True, seconds_since_turn=0.1, now_ms=NOW, last_fetch_ms=stale, holding_for_pushes=True
    )
    assert not ready(
        settled=True, seconds_since_turn=6.0, now_ms=NOW, last_fetch_ms=stale, holding_for_pushes=True
    ), "a stuck loop is unready, backpressure or not"
