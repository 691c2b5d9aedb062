"""When a due timer may fire: never before the partition's events up to the deadline are read.

A worker that is behind (restarted, or digesting a burst) sees deadlines that passed in wall-clock
time while an `agent_joined` that beat the deadline still waits unread in the partition. Firing
then would report a false Missed. So a timer fires only when the partition is caught up (nothing
committed is left unread) or the worker has already read a record stamped at or after the
deadline — Kafka keeps a partition in order, so everything before it has been seen — or has
consumed everything the broker had at a moment after the deadline (a fetch response's last
stable offset, observed at a known time). The last rule keeps a busy partition, which is never
quite caught up because the consumer prefetches, from firing late by a record's inter-arrival time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    caught_up: bool
    """The consumer's position has reached the partition's last stable offset."""
    read_up_to_ms: int
    """Highest record timestamp read from the partition so far (-1 when none)."""
    stable_read_ms: int = -1
    """Latest time at which the broker's last stable offset was one the consumer has since reached."""


def may_fire(due_ms: int, now_ms: int, progress: PartitionProgress) -> bool:
    return due_ms <= fire_horizon_ms(now_ms, progress)


def fire_horizon_ms(now_ms: int, progress: PartitionProgress) -> int:
    """Timers due at or before this instant may fire now (the same rule as `may_fire`)."""
    if progress.caught_up:
        return now_ms
    return min(now_ms, max(progress.read_up_to_ms, progress.stable_read_ms))
