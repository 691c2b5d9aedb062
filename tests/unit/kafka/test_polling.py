"""How long the consumer loop polls, and how it pauses after failed polls."""

from __future__ import annotations

from service.kafka.polling import IDLE_POLL_MS, POLL_RETRY, RetryPause, poll_timeout_ms

NOW = 1_000_000


def test_without_timers_the_poll_waits_the_idle_time() -> None:
    assert poll_timeout_ms(NOW, []) == IDLE_POLL_MS
    assert poll_timeout_ms(NOW, [None, None]) == IDLE_POLL_MS


def test_the_poll_returns_when_the_earliest_timer_of_any_partition_falls_due() -> None:
    assert poll_timeout_ms(NOW, [NOW + 200, None, NOW + 40, NOW + 90]) == 40


def test_a_due_or_overdue_timer_polls_for_1_ms_not_0_or_negative() -> None:
    """0 would make aiokafka return only what is buffered; a negative timeout is an error."""
    assert poll_timeout_ms(NOW, [NOW]) == 1
    assert poll_timeout_ms(NOW, [NOW - 5_000]) == 1


def test_a_far_timer_still_polls_no_longer_than_the_idle_time() -> None:
    """Fan-out reports are recorded once per turn: a long poll would delay them."""
    assert poll_timeout_ms(NOW, [NOW + 3_600_000]) == IDLE_POLL_MS


def test_failed_polls_wait_longer_each_time_and_start_over_after_a_success() -> None:
    pause = RetryPause(POLL_RETRY)
    assert [pause.failed() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    pause.succeeded()
    assert pause.failed() == 0.5
