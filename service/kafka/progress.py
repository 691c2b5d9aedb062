"""The deadline gate's inputs: what the consumer has read of a partition, turned into the core's
`PartitionProgress` (service/domain/deadlines.py says what the gate does with it).

Pure bookkeeping over facts the consumer loop gathers (record timestamps, the position, the last
fetch response's last stable offset and time); no I/O, so it is unit-tested with plain numbers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from service.domain.deadlines import PartitionProgress
from service.partition.records import LOG_APPEND_TIME, ConsumedRecord


@dataclass(frozen=True, slots=True)
class Fetched:
    """What the consumer knows of an assigned partition now."""

    position: int
    """The consumer's position: not the last record's offset + 1, because the consumer steps over
    transaction markers, which occupy offsets; only the position can reach the stable offset."""
    stable: int | None
    """The last stable offset of the latest fetch response (None: no response yet)."""
    polled_ms: int | None
    """When that fetch response arrived (None: no response yet)."""


def trusted_time(record: ConsumedRecord, clock_tolerance_ms: int) -> int:
    """What a record's timestamp proves about the partition's progress: the broker's append time
    as it is; a producer's CreateTime less the tolerance for its clock running ahead (a record
    stamped in the future by a fast clock must not let deadlines fire while events stamped
    correctly before them are still unread)."""
    if record.timestamp_type == LOG_APPEND_TIME:
        return record.timestamp
    return record.timestamp - clock_tolerance_ms


@dataclass(slots=True)
class ReadProgress:
    """How far the worker has read one input partition, in time."""

    read_up_to_ms: int = -1
    """Highest trusted record timestamp read from the partition."""
    stable_read_ms: int = -1
    """Latest fetch-response time whose last stable offset the consumer has reached."""
    stable_samples: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=256))
    """(last stable offset, response time) pairs seen but not yet reached by the position."""
    lag: int = 0
    """Last stable offset minus position at the last step (records readable, not yet read)."""

    def advance(
        self, records: list[ConsumedRecord], fetched: Fetched | None, clock_tolerance_ms: int
    ) -> PartitionProgress:
        """Account for the records just read and the consumer's state; the gate's input.
        `fetched` None: the partition is not known to be caught up (not assigned right now, or
        its position unknown)."""
        if records:
            self.read_up_to_ms = max(
                self.read_up_to_ms, *(trusted_time(record, clock_tolerance_ms) for record in records)
            )
        caught_up = fetched is not None and self.observe(fetched.position, fetched.stable, fetched.polled_ms)
        return PartitionProgress(caught_up, self.read_up_to_ms, self.stable_read_ms)

    def observe(self, position: int, stable: int | None, polled_ms: int | None) -> bool:
        """Record what the last fetch response said; return whether the partition is caught up."""
        if stable is None or polled_ms is None:
            return False
        self.lag = max(0, stable - position)
        if not self.stable_samples or self.stable_samples[-1] != (stable, polled_ms):
            self.stable_samples.append((stable, polled_ms))
        while self.stable_samples and self.stable_samples[0][0] <= position:
            self.stable_read_ms = max(self.stable_read_ms, self.stable_samples.popleft()[1])
        return position >= stable
