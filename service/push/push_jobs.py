"""The fan-out's bookkeeping: one `Job` per `SendPushes`, one `Entry` per push, and `Jobs`, the
jobs held by partition (to cancel them when it is lost) and by round (to stop a round's alerts
when it closes). Plain data; `FanOut` (fanout.py) drives it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import Enum, auto

from service.domain.effects import AddressedPush, SendPushes
from service.domain.push import Push
from service.domain.reports import FanOutFinished

RoundKey = tuple[str, str]
"""(chat_id, request_id): one round; the next round of the same chat has another request id."""


class Result(Enum):
    """What became of one push, for the round's `FanOutFinished`."""

    DELIVERED = auto()
    UNSURE = auto()
    FAILED = auto()


class Stage(Enum):
    QUEUED = auto()
    IN_FLIGHT = auto()
    BACKOFF = auto()
    DONE = auto()


@dataclass(eq=False, slots=True)
class Job:
    """One `SendPushes` being executed."""

    partition: int
    work: SendPushes
    results: list[Result | None]
    pending: int
    entries: list[Entry]
    round_closed: bool = False
    cancelled: bool = False

    @property
    def key(self) -> RoundKey:
        return (self.work.chat_id, self.work.request_id)

    def finished(self) -> FanOutFinished:
        """The report of a job whose every push is done."""
        work = self.work
        devices = [addressed.device for addressed in work.pushes]
        pairs = list(zip(devices, self.results, strict=True))
        delivered = tuple(device for device, result in pairs if result is Result.DELIVERED)
        unsure = tuple(device for device, result in pairs if result is Result.UNSURE)
        return FanOutFinished(
            self.partition, work.chat_id, work.request_id, delivered, unsure, covered=tuple(devices)
        )


@dataclass(eq=False, slots=True)
class Entry:
    """One push of a job, from submission until it is done."""

    job: Job
    index: int
    size: int
    stage: Stage = Stage.QUEUED
    attempts: int = 0
    may_have_reached: bool = False
    timer: asyncio.TimerHandle | None = None
    task: asyncio.Task[None] | None = None

    @property
    def addressed(self) -> AddressedPush:
        return self.job.work.pushes[self.index]

    @property
    def push(self) -> Push:
        return self.job.work.pushes[self.index].push

    @property
    def unknown(self) -> Result:
        """The result of a push that was not delivered: unsure if a request may have reached it."""
        return Result.UNSURE if self.may_have_reached else Result.FAILED


class Jobs:
    """The jobs not finished yet, by partition and by round; `idle` is set while there are none."""

    def __init__(self) -> None:
        self._by_partition: dict[int, set[Job]] = {}
        self._by_round: dict[RoundKey, set[Job]] = {}
        self.idle = asyncio.Event()
        self.idle.set()

    def __len__(self) -> int:
        return sum(len(jobs) for jobs in self._by_partition.values())

    def __bool__(self) -> bool:
        return bool(self._by_partition)

    def partitions(self) -> list[int]:
        return list(self._by_partition)

    def add(self, job: Job, *, alerts: bool) -> None:
        """Hold `job`; `alerts`: it has alerts a closing update of its round must stop."""
        self._by_partition.setdefault(job.partition, set()).add(job)
        self.idle.clear()
        if alerts:
            self._by_round.setdefault(job.key, set()).add(job)

    def pop_partition(self, partition: int) -> set[Job]:
        return self._by_partition.pop(partition, set())

    def pop_round(self, key: RoundKey) -> set[Job]:
        return self._by_round.pop(key, set())

    def forget_round(self, job: Job) -> None:
        jobs = self._by_round.get(job.key)
        if jobs is not None:
            jobs.discard(job)
            if not jobs:
                del self._by_round[job.key]

    def finished(self, job: Job) -> None:
        self.forget_round(job)
        jobs = self._by_partition.get(job.partition)
        if jobs is not None:
            jobs.discard(job)
            if not jobs:
                del self._by_partition[job.partition]
        self.check_idle()

    def check_idle(self) -> None:
        """Set `idle` if no job is held any more."""
        if not self._by_partition:
            self.idle.set()
