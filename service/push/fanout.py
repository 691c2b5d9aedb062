"""Executes `SendPushes` effects after their transaction committed, off the consumer's path.

Every push waits in its provider's `ProviderQueue`, ordered by expiry (an alert's expiry is its
round's deadline), and the provider's `max_in_flight` slots take the earliest first. Nothing is
shed while its expiry is ahead: a burst makes pushes late, not lost. Only expired pushes are
dropped (`skipped{why="expired"}`); one timer per provider, armed for the earliest expiry, drops
them even while every slot is busy. The queue is bounded by memory, softly: past
`max_queue_bytes` it still takes what the consumer already decided, and says `saturated`, which
the consumer loop uses as backpressure (it stops fetching chat events until the queue drains).

Transient failures are retried with `RetryPolicy` (capped, jittered, honouring Retry-After), never
past the push's expiry; a retry goes back into the queue in expiry order. A closing update for a
round (`HANDOFF_CLOSED`) drops that round's alerts still queued or waiting out a backoff
(`skipped{why="round_closed"}`) and stops retries of those in flight, so a 429 or a 503 never
makes a phone buzz for a chat that was taken. Results flow back through `report`, which the
worker turns into changelog writes and `token_rejected` events in the partition's next
transaction: the devices a provider accepted (`delivered`), and those whose outcome is unknown
because a request may have reached the phone but no answer came back (`unsure`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import itertools
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum, auto

import structlog

from service.clock import Clock
from service.domain.effects import AddressedPush, SendPushes
from service.domain.events import TokenRejection
from service.domain.push import OutcomeKind, Provider, Push, PushKind, PushOutcome, SkipReason
from service.domain.reports import DeviceRejected, FanOutFinished, FanOutReport
from service.observability.metrics import Metrics
from service.push.base import PushSender

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_s: float = 0.5
    cap_s: float = 30.0
    max_attempts: int = 6

    def delay(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Full-jitter backoff for the given (1-based) failed attempt, at least Retry-After."""
        backoff = rng.uniform(0, min(self.cap_s, self.base_s * 2 ** (attempt - 1)))
        return max(backoff, retry_after_s or 0.0)


def token_fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


MAY_HAVE_REACHED = frozenset({"timeout", "connection_error"})
"""`RETRY_LATER` reasons (fcm.py, apns.py) after which the request may have reached the provider
and the phone: no answer came back. A connection refused before sending is also reported as
`connection_error`; counting it as "may have reached" costs at most one silent closing update."""

QUEUED_PUSH_OVERHEAD_B = 1_200
"""Bytes a push held by the fan-out costs besides its strings' characters: the `Push` and
`AddressedPush` objects, the data dict and each string's header, the queue entry and its heap
tuple. Measured at about 800 B (`python -m benchmarks.push_queue_memory`, docs/benchmarks.md,
"Push burst"); rounded up to stay conservative. `push_size` adds the characters, so a queue's
bytes are an upper estimate that costs a handful of `len()` calls per push."""


def push_size(push: Push) -> int:
    """Conservative estimate of the memory a push held by the fan-out keeps alive."""
    size = QUEUED_PUSH_OVERHEAD_B + len(push.token) + len(push.collapse_id)
    size += len(push.title or "") + len(push.body or "")
    return size + sum(len(key) + len(value) for key, value in push.data.items())


RoundKey = tuple[str, str]
"""(chat_id, request_id): one round; the next round of the same chat has another request id."""


class _Result(Enum):
    DELIVERED = auto()
    UNSURE = auto()
    FAILED = auto()


class _Stage(Enum):
    QUEUED = auto()
    IN_FLIGHT = auto()
    BACKOFF = auto()
    DONE = auto()


@dataclass(eq=False, slots=True)
class _Job:
    """One `SendPushes` being executed."""

    partition: int
    work: SendPushes
    results: list[_Result | None]
    pending: int
    entries: list[_Entry]
    round_closed: bool = False
    cancelled: bool = False

    @property
    def key(self) -> RoundKey:
        return (self.work.chat_id, self.work.request_id)


@dataclass(eq=False, slots=True)
class _Entry:
    """One push of a job, from submission until it is done."""

    job: _Job
    index: int
    size: int
    stage: _Stage = _Stage.QUEUED
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


class ProviderQueue:
    """One provider's pushes, earliest expiry first, served by `max_in_flight` slots.

    `held` / `held_bytes` count every push the fan-out holds for this provider until it is done:
    waiting for a slot, waiting out a retry backoff, or in flight. Entries dropped while waiting
    (round closed, partition lost) leave the heap lazily; the heap is rebuilt when they dominate.
    """

    def __init__(self, provider: Provider, max_in_flight: int, max_bytes: int) -> None:
        self.provider = provider
        self.max_in_flight = max_in_flight
        self.max_bytes = max_bytes
        self.in_flight = 0
        self.held = 0
        self.held_bytes = 0
        self._heap: list[tuple[int, int, _Entry]] = []
        self._seq = itertools.count()
        self.expiry_timer: asyncio.TimerHandle | None = None
        self.expiry_timer_at_ms: int | None = None

    @property
    def saturated(self) -> bool:
        return self.held_bytes >= self.max_bytes

    @property
    def waiting(self) -> int:
        """Pushes in the heap waiting for a slot (dropped entries excluded)."""
        return sum(1 for _, _, entry in self._heap if entry.stage is _Stage.QUEUED)

    def hold(self, entry: _Entry) -> None:
        self.held += 1
        self.held_bytes += entry.size

    def release(self, entry: _Entry) -> None:
        self.held -= 1
        self.held_bytes -= entry.size

    def put(self, entry: _Entry) -> None:
        entry.stage = _Stage.QUEUED
        heapq.heappush(self._heap, (entry.push.expires_at_ms, next(self._seq), entry))

    def head(self) -> _Entry | None:
        """The earliest-expiring push still waiting, with dropped entries cleared off the top."""
        heap = self._heap
        while heap and heap[0][2].stage is not _Stage.QUEUED:
            heapq.heappop(heap)
        return heap[0][2] if heap else None

    def pop(self) -> _Entry:
        return heapq.heappop(self._heap)[2]

    def compact(self) -> None:
        """Rebuild the heap without dropped entries once they are most of it."""
        if len(self._heap) > 64 and len(self._heap) > 2 * self.held:
            self._heap = [item for item in self._heap if item[2].stage is _Stage.QUEUED]
            heapq.heapify(self._heap)


class FanOut:
    def __init__(
        self,
        senders: Mapping[Provider, PushSender],
        metrics: Metrics,
        clock: Clock,
        report: Callable[[FanOutReport], None],
        *,
        max_in_flight: int = 200,
        max_queue_bytes: int = 64 * 1024 * 1024,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """`max_in_flight` requests per provider at once; `max_queue_bytes` per provider is where
        the fan-out reports itself `saturated` (it never drops a live push for it)."""
        self._senders = senders
        self._metrics = metrics
        self._clock = clock
        self._report = report
        self._retry = retry or RetryPolicy()
        self._rng = rng or random.Random()  # noqa: S311 -- jitter, not cryptography
        self.queues = {
            provider: ProviderQueue(provider, max_in_flight, max_queue_bytes) for provider in Provider
        }
        self._jobs: dict[int, set[_Job]] = {}
        self._rounds: dict[RoundKey, set[_Job]] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._unsaturated = asyncio.Event()
        self._unsaturated.set()
        metrics.watch_push_queues(self._queue_gauges)

    # -- the consumer's side ----------------------------------------------------------------------

    def submit(self, partition: int, job: SendPushes) -> None:
        if any(addressed.push.kind is PushKind.HANDOFF_CLOSED for addressed in job.pushes):
            self._close_round((job.chat_id, job.request_id))
        state = _Job(partition, job, [None] * len(job.pushes), len(job.pushes), [])
        self._jobs.setdefault(partition, set()).add(state)
        self._idle.clear()
        if any(addressed.push.kind is PushKind.HANDOFF_REQUESTED for addressed in job.pushes):
            self._rounds.setdefault(state.key, set()).add(state)
        now = self._clock.now_ms()
        touched: set[Provider] = set()
        for index, addressed in enumerate(job.pushes):
            push = addressed.push
            if push.provider not in self._senders:
                self._skipped(push.provider, SkipReason.NO_SENDER)
                state.results[index] = _Result.FAILED
                state.pending -= 1
            elif now >= push.expires_at_ms:
                self._skipped(push.provider, SkipReason.EXPIRED)
                state.results[index] = _Result.FAILED
                state.pending -= 1
            else:
                entry = _Entry(state, index, push_size(push))
                state.entries.append(entry)
                queue = self.queues[push.provider]
                queue.hold(entry)
                queue.put(entry)
                touched.add(push.provider)
        self._saturation_changed()
        if state.pending == 0:
            self._finish(state)
        for provider in touched:
            self._pump(self.queues[provider])

    @property
    def saturated(self) -> bool:
        """True while a provider's queue holds `max_queue_bytes` or more: take no new work."""
        return any(queue.saturated for queue in self.queues.values())

    async def wait_unsaturated(self, timeout_s: float) -> bool:
        """Wait until no queue is saturated, for at most `timeout_s`; whether that happened."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._unsaturated.wait()
        except TimeoutError:
            return False
        return True

    @property
    def in_flight(self) -> int:
        """Fan-outs (one per `SendPushes`) not finished yet."""
        return sum(len(jobs) for jobs in self._jobs.values())

    async def cancel_partition(self, partition: int) -> None:
        """Stop fan-outs of a partition this worker no longer owns; the new owner resumes them."""
        jobs = self._jobs.pop(partition, set())
        tasks = [task for job in jobs for task in self._drop_job(job)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._after_drop()

    async def close(self, grace_s: float) -> None:
        """Let running fan-outs finish for up to `grace_s`, then cancel the rest."""
        if self._jobs:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace_s):
                    await self._idle.wait()
        for partition in list(self._jobs):
            await self.cancel_partition(partition)
        for queue in self.queues.values():
            if queue.expiry_timer is not None:
                queue.expiry_timer.cancel()
                queue.expiry_timer = None

    # -- scheduling -------------------------------------------------------------------------------

    def _pump(self, queue: ProviderQueue) -> None:
        """Drop expired heads, fill free slots earliest-expiry first, arm the expiry timer."""
        now = self._clock.now_ms()
        while (entry := queue.head()) is not None:
            if entry.push.expires_at_ms <= now:
                queue.pop()
                self._skipped(queue.provider, SkipReason.EXPIRED)
                self._settle(entry, _Result.UNSURE if entry.may_have_reached else _Result.FAILED)
                continue
            if queue.in_flight >= queue.max_in_flight:
                break
            queue.pop()
            queue.in_flight += 1
            entry.stage = _Stage.IN_FLIGHT
            entry.task = asyncio.get_running_loop().create_task(
                self._attempt(queue, entry), name=f"push:{entry.job.work.chat_id}"
            )
        queue.compact()
        self._arm_expiry(queue, now)

    def _arm_expiry(self, queue: ProviderQueue, now: int) -> None:
        """One timer per provider, at the earliest expiry of a push still waiting for a slot."""
        head = queue.head()
        due = head.push.expires_at_ms if head is not None else None
        if due == queue.expiry_timer_at_ms:
            return
        if queue.expiry_timer is not None:
            queue.expiry_timer.cancel()
            queue.expiry_timer = None
        queue.expiry_timer_at_ms = due
        if due is not None:
            queue.expiry_timer = asyncio.get_running_loop().call_later(
                max(0.0, (due - now) / 1000), self._expiry_due, queue
            )

    def _expiry_due(self, queue: ProviderQueue) -> None:
        queue.expiry_timer = None
        queue.expiry_timer_at_ms = None
        self._pump(queue)

    async def _attempt(self, queue: ProviderQueue, entry: _Entry) -> None:
        """One request for one push, then settle it, retry it later, or drop it."""
        job = entry.job
        sender = self._senders[queue.provider]
        entry.attempts += 1
        try:
            outcome = await self._send_once(sender, entry.addressed, job.work)
        finally:
            queue.in_flight -= 1
            entry.task = None
        if job.cancelled:
            return
        result = self._outcome(entry, outcome)
        if result is not None:
            self._settle(entry, result)
        else:
            self._retry_later(queue, entry, outcome)
        self._pump(queue)

    def _outcome(self, entry: _Entry, outcome: PushOutcome) -> _Result | None:
        """What one answer means for the push: its result, or None to retry it."""
        job, addressed = entry.job, entry.addressed
        if outcome.actual_environment is not None:
            self._environment_mismatch(job.work, addressed, outcome)
        if outcome.kind is OutcomeKind.DELIVERED:
            return _Result.DELIVERED
        if outcome.kind is OutcomeKind.TOKEN_DEAD:
            self._token_dead(job.partition, addressed, outcome)
            return _Result.FAILED
        if outcome.kind is OutcomeKind.RETRY_LATER and outcome.reason in MAY_HAVE_REACHED:
            entry.may_have_reached = True
        unknown = _Result.UNSURE if entry.may_have_reached else _Result.FAILED
        if outcome.kind is OutcomeKind.REQUEST_BUG or entry.attempts >= self._retry.max_attempts:
            log.warning(
                "push_failed",
                chat_id=job.work.chat_id,
                provider=addressed.push.provider.value,
                outcome=outcome.kind.value,
                reason=outcome.reason,
                attempts=entry.attempts,
            )
            return unknown
        if job.round_closed:
            self._skipped(addressed.push.provider, SkipReason.ROUND_CLOSED)
            return unknown
        return None

    def _retry_later(self, queue: ProviderQueue, entry: _Entry, outcome: PushOutcome) -> None:
        delay = self._retry.delay(entry.attempts, outcome.retry_after_s, self._rng)
        if self._clock.now_ms() + delay * 1000 >= entry.push.expires_at_ms:
            self._skipped(queue.provider, SkipReason.EXPIRED)
            self._settle(entry, _Result.UNSURE if entry.may_have_reached else _Result.FAILED)
            return
        entry.stage = _Stage.BACKOFF
        entry.timer = asyncio.get_running_loop().call_later(delay, self._backoff_over, queue, entry)

    def _backoff_over(self, queue: ProviderQueue, entry: _Entry) -> None:
        entry.timer = None
        queue.put(entry)
        self._pump(queue)

    # -- rounds closing, partitions lost ------------------------------------------------------------

    def _close_round(self, key: RoundKey) -> None:
        """The round closed: its alerts still waiting are dropped, those in flight not retried."""
        for job in self._rounds.pop(key, set()):
            job.round_closed = True
            touched: set[ProviderQueue] = set()
            for entry in job.entries:
                if entry.stage is _Stage.QUEUED or entry.stage is _Stage.BACKOFF:
                    if entry.timer is not None:
                        entry.timer.cancel()
                        entry.timer = None
                    self._skipped(entry.push.provider, SkipReason.ROUND_CLOSED)
                    self._settle(entry, _Result.UNSURE if entry.may_have_reached else _Result.FAILED)
                    touched.add(self.queues[entry.push.provider])
            for queue in touched:
                queue.compact()

    def _drop_job(self, job: _Job) -> list[asyncio.Task[None]]:
        """Forget a job without reporting it; the tasks of its requests in flight, to cancel."""
        job.cancelled = True
        tasks = []
        for entry in job.entries:
            if entry.stage is _Stage.DONE:
                continue
            if entry.timer is not None:
                entry.timer.cancel()
                entry.timer = None
            if entry.task is not None:
                tasks.append(entry.task)
            entry.stage = _Stage.DONE
            self.queues[entry.push.provider].release(entry)
        self._forget(job)
        return tasks

    def _after_drop(self) -> None:
        for queue in self.queues.values():
            self._pump(queue)  # slots the dropped requests held are free again
        self._saturation_changed()
        if not self._jobs:
            self._idle.set()

    # -- results ----------------------------------------------------------------------------------

    def _settle(self, entry: _Entry, result: _Result) -> None:
        job = entry.job
        entry.stage = _Stage.DONE
        self.queues[entry.push.provider].release(entry)
        self._saturation_changed()
        job.results[entry.index] = result
        job.pending -= 1
        if job.pending == 0:
            self._finish(job)

    def _finish(self, job: _Job) -> None:
        self._forget(job)
        jobs = self._jobs.get(job.partition)
        if jobs is not None:
            jobs.discard(job)
            if not jobs:
                del self._jobs[job.partition]
        if not self._jobs:
            self._idle.set()
        if job.work.report_delivery:
            devices = [addressed.device for addressed in job.work.pushes]
            pairs = list(zip(devices, job.results, strict=True))
            delivered = tuple(device for device, result in pairs if result is _Result.DELIVERED)
            unsure = tuple(device for device, result in pairs if result is _Result.UNSURE)
            work = job.work
            self._report(
                FanOutFinished(
                    job.partition, work.chat_id, work.request_id, delivered, unsure, tuple(devices)
                )
            )

    def _forget(self, job: _Job) -> None:
        jobs = self._rounds.get(job.key)
        if jobs is not None:
            jobs.discard(job)
            if not jobs:
                del self._rounds[job.key]

    def _saturation_changed(self) -> None:
        saturated = self.saturated
        if saturated == (not self._unsaturated.is_set()):
            return
        held = {queue.provider.value: queue.held_bytes for queue in self.queues.values()}
        if saturated:
            self._unsaturated.clear()
            log.warning("push_queue_saturated", held_bytes=held)
        else:
            self._unsaturated.set()
            log.info("push_queue_unsaturated", held_bytes=held)

    def _queue_gauges(self) -> dict[Provider, tuple[int, int, int]]:
        """(pushes held, their estimated bytes, the limit) per provider, read at each scrape."""
        return {p: (q.held, q.held_bytes, q.max_bytes) for p, q in self.queues.items()}

    # -- one request ------------------------------------------------------------------------------

    def _skipped(self, provider: Provider, why: SkipReason) -> None:
        self._metrics.pushes_skipped.labels(provider.value, why.value).inc()

    async def _send_once(self, sender: PushSender, addressed: AddressedPush, job: SendPushes) -> PushOutcome:
        push = addressed.push
        provider = push.provider.value
        started = self._clock.monotonic()
        outcome = await sender.send(push)
        self._metrics.push_latency.labels(provider).observe(self._clock.monotonic() - started)
        self._metrics.pushes.labels(provider, push.kind.value, outcome.kind.value).inc()
        if outcome.kind is OutcomeKind.DELIVERED and push.kind is PushKind.HANDOFF_REQUESTED:
            seconds = max(0, self._clock.now_ms() - job.requested_at_ms) / 1000
            self._metrics.handoff_to_push.labels(provider).observe(seconds)
            log.info("push_sent", chat_id=job.chat_id, agent_id=addressed.device.agent_id, provider=provider)
        return outcome

    def _environment_mismatch(self, job: SendPushes, addressed: AddressedPush, outcome: PushOutcome) -> None:
        """The token belongs to the other APNs environment: the agent's snapshot needs fixing."""
        configured = addressed.push.apns_environment.value
        self._metrics.apns_environment_mismatches.labels(configured).inc()
        log.warning(
            "apns_environment_mismatch",
            chat_id=job.chat_id,
            agent_id=addressed.device.agent_id,
            device_id=addressed.device.device_id,
            configured=configured,
            actual=outcome.actual_environment.value if outcome.actual_environment else None,
            outcome=outcome.kind.value,
            reason=outcome.reason,
        )

    def _token_dead(self, partition: int, addressed: AddressedPush, outcome: PushOutcome) -> None:
        push = addressed.push
        rejection = TokenRejection(
            agent_id=addressed.device.agent_id,
            device_id=addressed.device.device_id,
            provider=push.provider,
            reason=outcome.reason,
            token_fingerprint=token_fingerprint(push.token),
        )
        log.info(
            "push_token_rejected",
            agent_id=rejection.agent_id,
            device_id=rejection.device_id,
            provider=push.provider.value,
            reason=outcome.reason,
        )
        self._report(DeviceRejected(partition, rejection, push.token))
