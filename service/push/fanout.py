"""Executes `SendPushes` effects after their transaction committed, off the consumer's path.

Every push waits in its provider's `ProviderQueue` (push_queue.py), ordered by expiry (an alert's
expiry is its round's deadline), and the provider's `max_in_flight` slots take the earliest first.
Nothing is shed while its expiry is ahead: a burst makes pushes late, not lost. Only expired pushes
are dropped (`skipped{why="expired"}`); one timer per provider, armed for the earliest expiry, drops
them even while every slot is busy. The queue is bounded by memory, softly: past
`max_queue_bytes` it still takes what the consumer already decided, and says `saturated`, which
the consumer loop uses as backpressure (it stops fetching chat events until the queue drains).

Transient failures are retried with `RetryPolicy` (service/backoff.py: capped, full jitter,
honouring Retry-After), never past the push's expiry; a retry goes back into the queue in expiry
order. A closing update for a round (`HANDOFF_CLOSED`) drops that round's alerts and reminders
still queued or waiting out a backoff (`skipped{why="round_closed"}`) and stops retries of those
in flight, so a 429 or a 503 never makes a phone buzz for a chat that was taken. Each answer is counted and
logged once, in push_outcomes.py. Results flow back through `report`, which the worker turns into
changelog writes and `token_rejected` events in the partition's next transaction: per device,
delivered, unsure (a request may have reached the phone but no answer came back), rejected (dead
token), failed for good, or none of these (never sent before it expired: "pending"); see
`push_jobs.Result`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Mapping
from typing import assert_never

from service.clock import Clock
from service.domain.effects import SendPushes
from service.domain.push import OutcomeKind, Provider, PushKind, PushOutcome, SkipReason
from service.domain.reports import FanOutReport
from service.observability.metrics import Metrics
from service.push.base import PushSender
from service.push.push_jobs import Entry, Job, Jobs, Result, RoundKey, Stage, stopped_by_closing
from service.push.push_outcomes import MAY_HAVE_REACHED, PushOutcomes, RetryPolicy
from service.push.push_queue import ProviderQueue, Saturation, push_size


class FanOut:
    """Sends each committed `SendPushes` to its devices' providers and reports what came of it.

    The consumer side calls `submit` (after the commit), `cancel_partition` (partition lost),
    `close` (shutdown), and reads `saturated` / `wait_unsaturated` for backpressure; each finished
    job is reported through `report` as a `FanOutFinished`, each dead token as a `DeviceRejected`.
    """

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
        self._clock = clock
        self._report = report
        self._retry = retry or RetryPolicy()
        self._backoff = self._retry.backoff(rng or random.Random())  # noqa: S311 -- jitter, not cryptography
        self._outcomes = PushOutcomes(metrics, clock, report)
        self.queues = {
            provider: ProviderQueue(provider, max_in_flight, max_queue_bytes) for provider in Provider
        }
        self._jobs = Jobs()
        self._saturation = Saturation(self.queues)
        metrics.watch_push_queues(self._saturation.gauges)

    # -- the consumer's side ----------------------------------------------------------------------

    def submit(self, partition: int, job: SendPushes) -> None:
        if any(addressed.push.kind is PushKind.HANDOFF_CLOSED for addressed in job.pushes):
            self._close_round((job.chat_id, job.request_id))
        state = Job(partition, job, [None] * len(job.pushes), len(job.pushes), [])
        alerts = any(stopped_by_closing(addressed.push.kind) for addressed in job.pushes)
        self._jobs.add(state, alerts=alerts)
        now = self._clock.now_ms()
        touched: set[Provider] = set()
        for index, addressed in enumerate(job.pushes):
            push = addressed.push
            if push.provider not in self._senders:
                self._outcomes.skipped(push.provider, SkipReason.NO_SENDER)
                state.results[index] = Result.FAILED
                state.pending -= 1
            elif now >= push.expires_at_ms:
                self._outcomes.skipped(push.provider, SkipReason.EXPIRED)
                state.results[index] = Result.NOT_SENT
                state.pending -= 1
            else:
                entry = Entry(state, index, push_size(push))
                state.entries.append(entry)
                queue = self.queues[push.provider]
                queue.hold(entry)
                queue.put(entry)
                touched.add(push.provider)
        self._saturation.changed()
        if state.pending == 0:
            self._finish(state)
        for provider in touched:
            self._pump(self.queues[provider])

    @property
    def saturated(self) -> bool:
        """True while a provider's queue holds `max_queue_bytes` or more: take no new work."""
        return self._saturation.saturated

    async def wait_unsaturated(self, timeout_s: float) -> bool:
        """Wait until no queue is saturated, for at most `timeout_s`; whether that happened."""
        return await self._saturation.wait_unsaturated(timeout_s)

    @property
    def in_flight(self) -> int:
        """Fan-outs (one per `SendPushes`) not finished yet."""
        return len(self._jobs)

    async def cancel_partition(self, partition: int) -> None:
        """Stop fan-outs of a partition this worker no longer owns; the new owner resumes them."""
        jobs = self._jobs.pop_partition(partition)
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
                    await self._jobs.idle.wait()
        for partition in self._jobs.partitions():
            await self.cancel_partition(partition)
        for queue in self.queues.values():
            queue.disarm_expiry()

    # -- scheduling -------------------------------------------------------------------------------

    def _pump(self, queue: ProviderQueue) -> None:
        """Drop expired heads, fill free slots earliest-expiry first, arm the expiry timer."""
        now = self._clock.now_ms()
        while (entry := queue.head()) is not None:
            if entry.push.expires_at_ms <= now:
                queue.pop()
                self._outcomes.skipped(queue.provider, SkipReason.EXPIRED)
                self._settle(entry, entry.undelivered)
                continue
            if queue.in_flight >= queue.max_in_flight:
                break
            queue.pop()
            queue.in_flight += 1
            entry.stage = Stage.IN_FLIGHT
            entry.task = asyncio.get_running_loop().create_task(
                self._attempt(queue, entry), name=f"push:{entry.job.work.chat_id}"
            )
        queue.compact()
        queue.arm_expiry(now, self._pump)

    async def _attempt(self, queue: ProviderQueue, entry: Entry) -> None:
        """One request for one push, then settle it, retry it later, or drop it."""
        job = entry.job
        sender = self._senders[queue.provider]
        entry.attempts += 1
        started = self._clock.monotonic()
        try:
            outcome = await sender.send(entry.push)
        finally:
            queue.in_flight -= 1
            entry.task = None
        self._outcomes.attempted(
            job.work,
            entry.addressed,
            outcome,
            seconds=self._clock.monotonic() - started,
            attempt=entry.attempts,
            last=entry.attempts >= self._retry.max_attempts,
        )
        if job.cancelled:
            return
        result = self._outcome(entry, outcome)
        if result is not None:
            self._settle(entry, result)
        else:
            self._retry_later(queue, entry, outcome)
        self._pump(queue)

    def _outcome(self, entry: Entry, outcome: PushOutcome) -> Result | None:
        """What one answer means for the push: its result, or None to retry it."""
        job, addressed = entry.job, entry.addressed
        if outcome.actual_environment is not None:
            self._outcomes.environment_mismatch(job.work, addressed, outcome)
        match outcome.kind:
            case OutcomeKind.DELIVERED:
                return Result.DELIVERED
            case OutcomeKind.TOKEN_DEAD:
                self._outcomes.token_dead(job.partition, addressed, outcome)
                return Result.REJECTED
            case OutcomeKind.REQUEST_BUG:
                return entry.undelivered
            case OutcomeKind.RETRY_LATER:
                if outcome.reason in MAY_HAVE_REACHED:
                    entry.may_have_reached = True
                if entry.attempts >= self._retry.max_attempts:
                    return entry.undelivered
                if job.round_closed:
                    self._outcomes.skipped(addressed.push.provider, SkipReason.ROUND_CLOSED)
                    return entry.undelivered
                return None
            case _:
                assert_never(outcome.kind)

    def _retry_later(self, queue: ProviderQueue, entry: Entry, outcome: PushOutcome) -> None:
        delay = self._backoff.delay(entry.attempts, outcome.retry_after_s)
        if self._clock.now_ms() + delay * 1000 >= entry.push.expires_at_ms:
            self._outcomes.skipped(queue.provider, SkipReason.EXPIRED)
            self._settle(entry, entry.undelivered)
            return
        entry.stage = Stage.BACKOFF
        entry.timer = asyncio.get_running_loop().call_later(delay, self._backoff_over, queue, entry)

    def _backoff_over(self, queue: ProviderQueue, entry: Entry) -> None:
        entry.timer = None
        queue.put(entry)
        self._pump(queue)

    # -- rounds closing, partitions lost ------------------------------------------------------------

    def _close_round(self, key: RoundKey) -> None:
        """The round closed: its alerts and reminders still waiting are dropped, those in flight
        not retried."""
        for job in self._jobs.pop_round(key):
            job.round_closed = True
            touched: set[ProviderQueue] = set()
            for entry in job.entries:
                if entry.stage is Stage.QUEUED or entry.stage is Stage.BACKOFF:
                    if entry.timer is not None:
                        entry.timer.cancel()
                        entry.timer = None
                    self._outcomes.skipped(entry.push.provider, SkipReason.ROUND_CLOSED)
                    self._settle(entry, entry.undelivered)
                    touched.add(self.queues[entry.push.provider])
            for queue in touched:
                queue.compact()

    def _drop_job(self, job: Job) -> list[asyncio.Task[None]]:
        """Forget a job without reporting it; the tasks of its requests in flight, to cancel."""
        job.cancelled = True
        tasks = []
        for entry in job.entries:
            if entry.stage is Stage.DONE:
                continue
            if entry.timer is not None:
                entry.timer.cancel()
                entry.timer = None
            if entry.task is not None:
                tasks.append(entry.task)
            entry.stage = Stage.DONE
            self.queues[entry.push.provider].release(entry)
        self._jobs.forget_round(job)
        return tasks

    def _after_drop(self) -> None:
        for queue in self.queues.values():
            self._pump(queue)  # slots the dropped requests held are free again
        self._saturation.changed()
        self._jobs.check_idle()

    # -- results ----------------------------------------------------------------------------------

    def _settle(self, entry: Entry, result: Result) -> None:
        job = entry.job
        entry.stage = Stage.DONE
        self.queues[entry.push.provider].release(entry)
        self._saturation.changed()
        job.results[entry.index] = result
        job.pending -= 1
        if job.pending == 0:
            self._finish(job)

    def _finish(self, job: Job) -> None:
        self._jobs.finished(job)
        if job.work.report_delivery:
            self._report(job.finished())
