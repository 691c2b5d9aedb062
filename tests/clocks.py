"""The test clocks, shared by every test that injects a `service.clock.Clock`.

- `ManualClock`: time moves only when the test moves it (`elapsed_s`, `advance`); wall and
  monotonic time move together.
- `LoopClock`: wall time that follows the event loop's clock, for code that arms loop timers
  against wall-clock deadlines (the fan-out's expiry timer).
- `ShiftedClock`: the real clock with monotonic time moved ahead at will, for talking to fakes
  that check real timestamps (e.g. a JWT's `iat`) while a test skips ahead.
"""

from __future__ import annotations

import asyncio
import time

T0_MS = 1_800_000_000_000
"""A fixed 'now' (epoch ms) so tests never depend on the wall clock."""


class ManualClock:
    def __init__(self, start_ms: int = T0_MS, start_monotonic_s: float = 5_000.0) -> None:
        self.start_ms = start_ms
        self.start_monotonic_s = start_monotonic_s
        self.elapsed_s = 0.0

    def advance(self, seconds: float) -> None:
        self.elapsed_s += seconds

    def now_ms(self) -> int:
        return self.start_ms + int(self.elapsed_s * 1000)

    def monotonic(self) -> float:
        return self.start_monotonic_s + self.elapsed_s


class LoopClock:
    """Wall time from `start_ms`, moving with the running event loop's clock."""

    def __init__(self, start_ms: int = T0_MS) -> None:
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        self._start_ms = start_ms

    def now_ms(self) -> int:
        return self._start_ms + int((self._loop.time() - self._start) * 1000)

    def monotonic(self) -> float:
        return self._loop.time()


class ShiftedClock:
    """The real clock, with monotonic time moved ahead by `ahead_s` (wall time stays real)."""

    def __init__(self) -> None:
        self.ahead_s = 0.0

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic() + self.ahead_s
