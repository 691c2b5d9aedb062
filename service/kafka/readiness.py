"""When the chat worker reports ready: only while it can make progress (README, "Readiness means
progress"). A pure function of facts the worker gathers, so each way of being stuck is tested."""

from __future__ import annotations

from collections.abc import Iterable

from service.kafka.polling import IDLE_POLL_MS

STALL_AFTER_MS = 5_000
"""An owned partition without a fetch response for this long means the worker cannot progress."""


def ready(
    *,
    settled: bool,
    seconds_since_turn: float,
    now_ms: int,
    last_fetch_ms: Iterable[int | None],
    holding_for_pushes: bool = False,
) -> bool:
    """`settled`: every assigned partition is owned and restored. `seconds_since_turn`: since the
    consumer loop last finished a turn. `last_fetch_ms`: for each owned partition, when its last
    fetch response arrived (None: none, or the partition is not assigned right now); read only if
    the other conditions hold. `holding_for_pushes`: the loop takes no records because the push
    queue is full (backpressure); aiokafka then fetches no partition that has records buffered, so
    their fetch times age while the worker is busy draining pushes, which is progress too."""
    if not settled:
        return False
    if seconds_since_turn > (STALL_AFTER_MS + IDLE_POLL_MS) / 1000:
        return False  # the consumer loop itself is stuck, whatever the fetcher does
    if holding_for_pushes:
        return True  # bounded: the loop takes a batch at least every BACKPRESSURE_MAX_HOLD_S
    return all(polled is not None and now_ms - polled <= STALL_AFTER_MS for polled in last_fetch_ms)
