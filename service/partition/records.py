"""The records a partition step reads and writes, as plain shapes: the step and the Kafka adapters
both use them, so they live here, below both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

LOG_APPEND_TIME: Final = 1
"""Kafka's `timestamp_type` of a record stamped by the broker on append (0: by the producer)."""


class ConsumedRecord(Protocol):
    """What the step reads of a consumed record (aiokafka's `ConsumerRecord` has these fields)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def timestamp_type(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to write in the partition's transaction (`partition` None: the producer picks)."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
