"""How the consumer loops poll: how long a poll may wait, how long the broker may hold a fetch,
and the pause after a failed poll. Pure: the loops do the waiting."""

from __future__ import annotations

from collections.abc import Iterable

from service.backoff import Backoff

IDLE_POLL_MS = 250
"""Longest poll when no timer is near: bounds how late fan-out reports are recorded."""
FETCH_MAX_WAIT_MS = 20
"""How long the broker may hold a fetch for data. aiokafka sends one fetch per broker at a time
and leaves out partitions with records still buffered, so a partition drained by a turn waits for
the fetch in flight to return, up to the default 500 ms; a short wait costs empty fetches when
idle (figures: docs/benchmarks.md, "Transactions and the turn")."""
POLL_RETRY = Backoff(base_s=0.5, cap_s=5.0)
"""After a failed poll: a broker error is usually gone in a moment, so retry soon; a lasting one
is not hammered, and the pause never exceeds the time after which readiness turns false anyway."""


def poll_timeout_ms(now_ms: int, next_due_ms: Iterable[int | None]) -> int:
    """How long the next poll may wait: until the earliest timer of the owned partitions falls
    due (at least 1 ms), and never longer than `IDLE_POLL_MS`. `next_due_ms`: each partition's
    earliest timer, None when it has none."""
    nearest = min((due for due in next_due_ms if due is not None), default=None)
    if nearest is None:
        return IDLE_POLL_MS
    return max(1, min(IDLE_POLL_MS, nearest - now_ms))


class RetryPause:
    """The pause of a loop after a failure: longer after each consecutive failure, from the start
    again after a success."""

    def __init__(self, backoff: Backoff = POLL_RETRY) -> None:
        self._backoff = backoff
        self._failures = 0

    def succeeded(self) -> None:
        self._failures = 0

    def failed(self) -> float:
        """Count a failure; the seconds to wait before the next try."""
        self._failures += 1
        return self._backoff.delay(self._failures)
