"""The core's push vocabulary where it carries a rule: when a sender's credentials count as broken."""

from __future__ import annotations

from service.domain.push import AUTH_FAILURES_BEFORE_UNHEALTHY, AuthHealth


def test_credentials_turn_unhealthy_at_the_threshold_of_failures_in_a_row_not_in_total() -> None:
    below = AUTH_FAILURES_BEFORE_UNHEALTHY - 1
    assert AuthHealth().ok
    assert AuthHealth(failures_total=1_000, consecutive_failures=below).ok, "old failures do not count"
    assert not AuthHealth(
        failures_total=AUTH_FAILURES_BEFORE_UNHEALTHY, consecutive_failures=AUTH_FAILURES_BEFORE_UNHEALTHY
    ).ok
    assert not AuthHealth(failures_total=50, consecutive_failures=50).ok
    assert AuthHealth(failures_total=50, consecutive_failures=0).ok, "one success in between heals"


def test_a_single_failure_is_not_an_outage() -> None:
    """One failed token fetch is noise."""
    assert AuthHealth(failures_total=1, consecutive_failures=1).ok
