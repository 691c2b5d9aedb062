"""A committed step's closed rounds feed the request-to-accept histogram and the unreachable
counter (#12), and nothing else does."""

from __future__ import annotations

from service.domain.effects import MissedWhen, RoundClosed
from service.domain.rounds import Outcome
from service.observability.metrics import Metrics
from service.partition.report import report_committed
from service.partition.step import StepResult


def sample(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


def test_accepted_rounds_observe_request_to_accept_and_unreachable_rounds_are_counted() -> None:
    metrics = Metrics([])
    closed = [
        RoundClosed("c1", "s", Outcome.ACCEPTED, accepted_after_ms=12_500),
        RoundClosed("c2", "s", Outcome.ACCEPTED, accepted_after_ms=0, unreachable=True),
        RoundClosed("c3", "s", Outcome.ENDED, unreachable=True),
        RoundClosed("c4", "s", Outcome.MISSED, 100, MissedWhen.IN_TIME),
    ]
    report_committed(metrics, 0, StepResult(closed=closed))
    assert sample(metrics, "notifier_request_to_accept_seconds_count") == 2
    assert sample(metrics, "notifier_request_to_accept_seconds_sum") == 12.5
    assert sample(metrics, "notifier_rounds_unreachable_total") == 2
