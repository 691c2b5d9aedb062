"""Executes `SendPushes` effects after their transaction committed, off the consumer's path.

Each round's pushes run as one task; sends to a provider are bounded by a semaphore so a slow
provider cannot grow memory without limit. Transient failures are retried with capped,
jittered exponential backoff (honouring Retry-After), never past the push's expiry: a push for
a round whose deadline has passed is worthless. Results flow back through `report`, which the
worker turns into changelog writes and `token_rejected` events in the partition's next
transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from service.clock import Clock
from service.domain.effects import AddressedPush, SendPushes
from service.domain.events import TokenRejection
from service.domain.rounds import DeviceRef
from service.observability.metrics import Metrics
from service.push.base import OutcomeKind, Provider, PushKind, PushOutcome, PushSender

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class FanOutFinished:
    partition: int
    chat_id: str
    request_id: str
    delivered: tuple[DeviceRef, ...]


@dataclass(frozen=True, slots=True)
class DeviceRejected:
    partition: int
    rejection: TokenRejection
    token: str
    """Kept in memory only, to mark the exact token dead; never logged or emitted."""


FanOutReport = FanOutFinished | DeviceRejected


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


class FanOut:
    def __init__(
        self,
        senders: Mapping[Provider, PushSender],
        metrics: Metrics,
        clock: Clock,
        report: Callable[[FanOutReport], None],
        *,
        max_in_flight: int = 200,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._senders = senders
        self._metrics = metrics
        self._clock = clock
        self._report = report
        self._retry = retry or RetryPolicy()
        self._rng = rng or random.Random()  # noqa: S311 -- jitter, not cryptography
        self._slots = {provider: asyncio.Semaphore(max_in_flight) for provider in Provider}
        self._tasks: dict[int, set[asyncio.Task[None]]] = {}

    def submit(self, partition: int, job: SendPushes) -> None:
        task = asyncio.get_running_loop().create_task(self._run(partition, job), name=f"fanout:{job.chat_id}")
        tasks = self._tasks.setdefault(partition, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    @property
    def in_flight(self) -> int:
        return sum(len(tasks) for tasks in self._tasks.values())

    async def cancel_partition(self, partition: int) -> None:
        """Stop fan-outs of a partition this worker no longer owns; the new owner resumes them."""
        tasks = self._tasks.pop(partition, set())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self, grace_s: float) -> None:
        """Let running fan-outs finish for up to `grace_s`, then cancel the rest."""
        tasks = [task for tasks in self._tasks.values() for task in tasks]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()

    async def _run(self, partition: int, job: SendPushes) -> None:
        results = await asyncio.gather(*(self._deliver(partition, job, push) for push in job.pushes))
        if job.report_delivery:
            delivered = tuple(push.device for push, ok in zip(job.pushes, results, strict=True) if ok)
            self._report(FanOutFinished(partition, job.chat_id, job.request_id, delivered))

    async def _deliver(self, partition: int, job: SendPushes, addressed: AddressedPush) -> bool:
        push = addressed.push
        sender = self._senders.get(push.provider)
        if sender is None:
            self._metrics.pushes_skipped.labels(push.provider.value, "no_sender").inc()
            return False
        attempt = 0
        while True:
            if self._clock.now_ms() >= push.expires_at_ms:
                self._metrics.pushes_skipped.labels(push.provider.value, "expired").inc()
                return False
            attempt += 1
            outcome = await self._send_once(sender, addressed, job)
            if outcome.kind is OutcomeKind.DELIVERED:
                return True
            if outcome.kind is OutcomeKind.TOKEN_DEAD:
                self._token_dead(partition, addressed, outcome)
                return False
            if outcome.kind is OutcomeKind.REQUEST_BUG or attempt >= self._retry.max_attempts:
                log.warning(
                    "push_failed",
                    chat_id=job.chat_id,
                    provider=push.provider.value,
                    outcome=outcome.kind.value,
                    reason=outcome.reason,
                    attempts=attempt,
                )
                return False
            delay = self._retry.delay(attempt, outcome.retry_after_s, self._rng)
            if self._clock.now_ms() + delay * 1000 >= push.expires_at_ms:
                self._metrics.pushes_skipped.labels(push.provider.value, "expired").inc()
                return False
            await asyncio.sleep(delay)

    async def _send_once(self, sender: PushSender, addressed: AddressedPush, job: SendPushes) -> PushOutcome:
        push = addressed.push
        provider = push.provider.value
        async with self._slots[push.provider]:
            started = self._clock.monotonic()
            outcome = await sender.send(push)
            self._metrics.push_latency.labels(provider).observe(self._clock.monotonic() - started)
        self._metrics.pushes.labels(provider, push.kind.value, outcome.kind.value).inc()
        if outcome.kind is OutcomeKind.DELIVERED and push.kind is PushKind.HANDOFF_REQUESTED:
            seconds = max(0, self._clock.now_ms() - job.requested_at_ms) / 1000
            self._metrics.handoff_to_push.labels(provider).observe(seconds)
            log.info("push_sent", chat_id=job.chat_id, agent_id=addressed.device.agent_id, provider=provider)
        return outcome

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
