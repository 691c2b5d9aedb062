"""The one backoff of the worker: capped exponential delays, with or without jitter.

Every retry loop (a push the provider refused for now, an FCM access token that could not be
fetched, a partition whose take-over failed, a dead letter the broker did not take) waits
`Backoff.delay(attempt)` between attempts, so the policy is written, tuned and tested once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum


class Jitter(StrEnum):
    NONE = "none"
    """The exponential delay itself: for one retrier that must not wait longer than planned."""
    FULL = "full"
    """Uniform in [0, delay]: spreads many clients retrying at once (AWS's "full jitter")."""
    EQUAL = "equal"
    """Uniform in [delay / 2, delay]: spread, but never much sooner than planned."""


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float
    cap_s: float
    jitter: Jitter = Jitter.NONE
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, attempt: int, at_least_s: float | None = None) -> float:
        """Seconds to wait after the `attempt`-th failure (1-based): `base_s * 2**(attempt-1)`
        capped at `cap_s`, jittered, and never less than `at_least_s` (a server's Retry-After)."""
        exponent = min(max(attempt, 1) - 1, 62)  # bounded: 2**62 s is past any cap anyway
        ceiling: float = min(self.cap_s, self.base_s * 2.0**exponent)
        match self.jitter:
            case Jitter.NONE:
                delay = ceiling
            case Jitter.FULL:
                delay = self.rng.uniform(0, ceiling)
            case Jitter.EQUAL:
                delay = self.rng.uniform(ceiling / 2, ceiling)
        return max(delay, at_least_s or 0.0)
