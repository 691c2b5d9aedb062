"""The one rejection reporter: a record the worker cannot use is logged, counted and dead-lettered
the same way whichever topic it came from (chat events in the partition step, agent and site
snapshots in the directory feed). docs/errors.md describes what an operator sees."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from service.observability.metrics import Metrics
from service.partition.records import ConsumedRecord, OutRecord
from service.wire.redaction import redact_personal_data
from service.wire.rejection import Reason, Rejection

log = structlog.get_logger(__name__)


def dead_letter_headers(record: ConsumedRecord, rejection: Rejection) -> list[tuple[str, bytes]]:
    """Headers of a dead-letter record: why, and where the untouched original came from."""
    return [
        ("reason", rejection.reason.value.encode()),
        ("detail", rejection.detail.encode()),
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
    ]


def count_rejected(metrics: Metrics, topic: str, reason: Reason) -> None:
    """The metric of a rejected record. The step counts after its transaction committed (a rolled
    back rejection is read, and counted, again); the feed, which has no transaction, at once."""
    metrics.events_rejected.labels(topic, reason.value).inc()


@dataclass(frozen=True, slots=True)
class RejectionReporter:
    """Logs a rejected record under `event` and gives back its dead letter for `dead_letter_topic`."""

    dead_letter_topic: str
    event: str
    """The log event: `event_rejected` (chat events), `snapshot_rejected` (directory snapshots)."""
    redact_personal_data: bool = False
    """Setting `dead_letter_redact_personal_data`: the dead letter's value without personal data
    (`service/wire/redaction.py`), marked by a `redacted` header; else the original bytes."""

    def reject(self, record: ConsumedRecord, rejection: Rejection, **ids: str | None) -> OutRecord:
        """`ids`: the chat, agent or site the record is about, where known (log fields)."""
        log.warning(
            self.event,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=rejection.reason.value,
            detail=rejection.detail,
            **ids,
        )
        headers = dead_letter_headers(record, rejection)
        value = record.value
        if self.redact_personal_data:
            redacted = redact_personal_data(value)
            value = redacted.value
            if redacted.redaction is not None:
                headers.append(("redacted", redacted.redaction.value.encode()))
        return OutRecord(self.dead_letter_topic, record.key, value, None, tuple(headers))
