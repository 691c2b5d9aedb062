"""What a committed step did, counted and logged: the one place a step's metrics and log lines
are written, and only after its transaction committed, so neither ever reflects a change that was
rolled back."""

from __future__ import annotations

import structlog

from service.domain.effects import MissedWhen, RoundClosed
from service.observability.metrics import Metrics
from service.partition.rejections import count_rejected
from service.partition.step import StepResult

log = structlog.get_logger(__name__)


def report_committed(metrics: Metrics, partition: int, result: StepResult) -> None:
    """Count and log the committed step of `partition`."""
    for event_type in result.consumed_types:
        metrics.events_consumed.labels(event_type).inc()
    for topic, reason in result.rejected:
        count_rejected(metrics, topic, reason)
    for event_type, repair in result.repaired:
        metrics.fields_repaired.labels(event_type, repair.field, repair.action).inc()
    for why in result.ignored:
        metrics.events_ignored.labels(why).inc()
    metrics.rounds_started.inc(result.started)
    for note in result.noted:
        metrics.rounds_degraded.labels(note.why.value).inc()
        log.warning(
            "round_degraded",
            why=note.why.value,
            chat_id=note.chat_id,
            site_id=note.site_id,
            partition=partition,
        )
    for closed in result.closed:
        _report_closed(metrics, partition, closed)


def _report_closed(metrics: Metrics, partition: int, closed: RoundClosed) -> None:
    metrics.rounds_closed.labels(closed.outcome.value).inc()
    if closed.missed_when is not None:
        metrics.rounds_missed.labels(closed.missed_when.value).inc()
    if closed.missed_when in (MissedWhen.IN_TIME, MissedWhen.LATE):
        # Rounds that expired before the worker read their request say nothing of its timers.
        metrics.deadline_lateness.observe(closed.lateness_ms / 1000)
    if closed.accepted_after_ms >= 0:
        metrics.request_to_accept.observe(closed.accepted_after_ms / 1000)
    if closed.unreachable:
        metrics.rounds_unreachable.inc()
    # Missed rounds at info; joins and ends (the normal case, thousands a second at full load)
    # at debug, because logging each cost a noticeable share of the worker's CPU
    # (docs/benchmarks.md, "Transactions and the turn").
    log_closed = log.info if closed.outcome.value == "missed" else log.debug
    log_closed(
        "round_closed",
        chat_id=closed.chat_id,
        site_id=closed.site_id,
        partition=partition,
        outcome=closed.outcome.value,
        lateness_ms=closed.lateness_ms,
        missed_when=closed.missed_when.value if closed.missed_when else None,
        unreachable=closed.unreachable,
    )
