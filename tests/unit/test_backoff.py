"""The one backoff: exponential, capped, jittered as asked, never below Retry-After."""

from __future__ import annotations

import random

import pytest

from service.backoff import Backoff, Jitter


def test_without_jitter_the_delay_doubles_up_to_the_cap() -> None:
    backoff = Backoff(0.5, 4.0)
    assert [backoff.delay(attempt) for attempt in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_attempts_far_beyond_the_cap_do_not_overflow() -> None:
    assert Backoff(0.5, 30.0).delay(10_000) == 30.0


@pytest.mark.parametrize(("jitter", "low"), [(Jitter.FULL, 0.0), (Jitter.EQUAL, 0.5)])
def test_jitter_stays_within_its_band(jitter: Jitter, low: float) -> None:
    backoff = Backoff(1.0, 1.0, jitter, random.Random(7))
    delays = [backoff.delay(3) for _ in range(2_000)]
    assert min(delays) >= low
    assert max(delays) <= 1.0
    assert max(delays) - min(delays) > (1.0 - low) * 0.9, "the band is used, not a single value"


def test_a_servers_retry_after_wins_over_a_shorter_delay() -> None:
    backoff = Backoff(0.5, 30.0, Jitter.FULL, random.Random(1))
    assert backoff.delay(1, at_least_s=7.0) == 7.0
    assert Backoff(0.5, 30.0).delay(7, at_least_s=1.0) == 30.0
