"""Time, injected: wall-clock epoch milliseconds for deadlines, monotonic seconds for durations.

Deadlines are absolute UTC epoch milliseconds everywhere in the code so that they survive a
restart and can be compared with event times; durations (latencies, timeouts) use the
monotonic clock so that a wall-clock step does not distort them.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Current wall-clock time as UTC epoch milliseconds."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; only differences are meaningful."""
        ...


class SystemClock:
    """The real clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()
