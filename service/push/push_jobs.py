"""The fan-out's bookkeeping: one `Job` per `SendPushes`, one `Entry` per push, and `Jobs`, the
jobs held by partition (to cancel them when it is lost) and by round (to stop a round's alerts
when it closes). Plain data; `FanOut` (fanout.py) drives it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import Enum, auto
from typing import assert_never

from service.domain.effects import AddressedPush, SendPushes
from service.domain.push import Push, PushKind
from service.domain.reports import FanOutFinished
from service.domain.rounds import DeviceRef

RoundKey = tuple[str, str]
"""(chat_id, request_id): one round; the next round of the same chat has another request id."""


class Result(Enum):
    """What became of one push, for the round's `FanOutFinished` (and the Missed event's
    per-device `notified`, which the core builds from it)."""

    DELIVERED = auto()
    UNSURE = auto()
    """Not known to be delivered, but a request may have reached the phone (no answer came)."""
    REJECTED = auto()
    """The provider declared the token dead."""
    FAILED = auto()
    """Failed for good: a request bug, retries that ran out (or whose next one would come after
    the expiry or the round's close), or no sender for the provider."""
    NOT_SENT = auto()
    """Never sent: it expired (or its round closed) before it got a slot. In no tuple of the
    report, so the core calls the device "pending": still waiting when the deadline came."""


def stopped_by_closing(kind: PushKind) -> bool:
    """Whether a push of `kind` still waiting must be dropped once its round closed: whatever
    buzzes for the chat (the alert, the reminder) must not buzz for a chat that was taken."""
    match kind:
        case PushKind.HANDOFF_REQUESTED | PushKind.HANDOFF_REMINDER:
            return True
        case PushKind.HANDOFF_CLOSED | PushKind.TEST_ALERT:
            return False
        case _:
            assert_never(kind)


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

        def having(wanted: Result) -> tuple[DeviceRef, ...]:
            return tuple(device for device, result in pairs if result is wanted)

        return FanOutFinished(
            self.partition,
            work.chat_id,
            work.request_id,
            having(Result.DELIVERED),
            having(Result.UNSURE),
            having(Result.REJECTED),
            having(Result.FAILED),
            covered=tuple(devices),
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
    def undelivered(self) -> Result:
        """The result of a push given up on without a verdict on its token: unsure if a request
        may have reached the phone, failed if requests were made and answered, not sent if none
        was made."""
        if self.may_have_reached:
            return Result.UNSURE
        return Result.FAILED if self.attempts else Result.NOT_SENT


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
