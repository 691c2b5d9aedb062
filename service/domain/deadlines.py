"""When a due timer may fire: never before the partition's events up to the deadline are read.

A worker that is behind (restarted, or digesting a burst) sees deadlines that passed in wall-clock
time while an `agent_joined` that beat the deadline still waits unread in the partition. Firing
then would report a false Missed. So a timer fires only when the partition is caught up (nothing
committed is left unread) or the worker has already read a record stamped at or after the
deadline — Kafka keeps a partition in order, so everything before it has been seen.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    caught_up: bool
    """The consumer's position has reached the partition's last stable offset."""
    read_up_to_ms: int
    """Highest record timestamp read from the partition so far (-1 when none)."""


def may_fire(due_ms: int, now_ms: int, progress: PartitionProgress) -> bool:
    return due_ms <= now_ms and (progress.caught_up or progress.read_up_to_ms >= due_ms)


def fire_horizon_ms(now_ms: int, progress: PartitionProgress) -> int:
    """Timers due at or before this instant may fire now (the same rule as `may_fire`)."""
    return now_ms if progress.caught_up else min(now_ms, progress.read_up_to_ms)
