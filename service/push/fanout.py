"""Executes `SendPushes` effects after their transaction committed, off the consumer's path.

Each round's pushes run as one task. Each provider has a `ProviderGate`: at most `max_in_flight`
requests at the provider at once and at most `max_waiting` pushes waiting for one of them; a push
that finds both full is shed (counted, logged once per burst) instead of queueing, so a provider
that hangs or crawls cannot grow memory without limit. Transient failures are retried with
capped, jittered exponential backoff (honouring Retry-After), never past the push's expiry: a push
for a round whose deadline has passed is worthless. Results flow back through `report`, which the
worker turns into changelog writes and `token_rejected` events in the partition's next
transaction; a shed, expired or failed push is not reported as delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

import structlog

from service.clock import Clock
from service.domain.effects import AddressedPush, SendPushes
from service.domain.events import TokenRejection
from service.domain.rounds import DeviceRef
from service.observability.metrics import Metrics
from service.push.base import OutcomeKind, Provider, PushKind, PushOutcome, PushSender, SkipReason

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


WAITING_PER_SLOT = 5
"""Default waiting line: 5 pushes per in-flight slot (1,000 at the default 200). firebase-admin costs
2.4-3.4 ms of CPU per push (shared/FACTS.md), so a healthy FCM works off 1,000 waiting pushes in
about 3 s (aioapns in about 1 s): a burst such as a catch-up batch waits instead of being shed,
while behind a provider that hangs the line soon fills and later pushes are shed at once."""


class ProviderGate:
    """Admission to one provider: `max_in_flight` requests at once, `max_waiting` in line for one.

    A push either takes a free slot, waits in line for one (if the line has room) or is shed. A
    retry goes through the gate again, so a push waiting out its backoff holds no place. Shedding
    is logged once per burst: `push_shedding_started` at the first shed push, and
    `push_shedding_stopped` (with the count) when a push next finds a free slot.
    """

    def __init__(self, provider: Provider, max_in_flight: int, max_waiting: int, clock: Clock) -> None:
        self.provider = provider
        self.max_in_flight = max_in_flight
        self.max_waiting = max_waiting
        self._clock = clock
        self._slots = asyncio.Semaphore(max_in_flight)
        self._in_flight = 0
        self._waiting = 0
        self._shed_in_burst = 0
        self._burst_started = 0.0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def waiting(self) -> int:
        return self._waiting

    def admit(self) -> bool:
        """True if a push may go ahead (now or after waiting in line); False if it is shed."""
        if not self._slots.locked():
            if self._shed_in_burst:
                log.info(
                    "push_shedding_stopped",
                    provider=self.provider.value,
                    shed=self._shed_in_burst,
                    seconds=round(self._clock.monotonic() - self._burst_started, 3),
                )
                self._shed_in_burst = 0
            return True
        if self._waiting < self.max_waiting:
            return True
        if not self._shed_in_burst:
            self._burst_started = self._clock.monotonic()
            log.warning(
                "push_shedding_started",
                provider=self.provider.value,
                max_in_flight=self.max_in_flight,
                max_waiting=self.max_waiting,
            )
        self._shed_in_burst += 1
        return False

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the provider's slots (waiting in line for it first if need be)."""
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            self._slots.release()


class FanOut:
    def __init__(
        self,
        senders: Mapping[Provider, PushSender],
        metrics: Metrics,
        clock: Clock,
        report: Callable[[FanOutReport], None],
        *,
        max_in_flight: int = 200,
        max_waiting: int | None = None,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """`max_in_flight` requests per provider at once; `max_waiting` pushes per provider in line
        for a slot (default `WAITING_PER_SLOT` per slot); beyond both, pushes are shed."""
        self._senders = senders
        self._metrics = metrics
        self._clock = clock
        self._report = report
        self._retry = retry or RetryPolicy()
        self._rng = rng or random.Random()  # noqa: S311 -- jitter, not cryptography
        waiting = max_in_flight * WAITING_PER_SLOT if max_waiting is None else max_waiting
        self.gates = {
            provider: ProviderGate(provider, max_in_flight, waiting, clock) for provider in Provider
        }
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
            self._skipped(push.provider, SkipReason.NO_SENDER)
            return False
        attempt = 0
        while True:
            if self._clock.now_ms() >= push.expires_at_ms:
                self._skipped(push.provider, SkipReason.EXPIRED)
                return False
            attempt += 1
            outcome = await self._send_once(sender, addressed, job)
            if outcome is None:
                self._skipped(push.provider, SkipReason.SHED)
                return False
            final = self._settle(partition, job, addressed, outcome, attempt)
            if final is not None:
                return final
            delay = self._retry.delay(attempt, outcome.retry_after_s, self._rng)
            if self._clock.now_ms() + delay * 1000 >= push.expires_at_ms:
                self._skipped(push.provider, SkipReason.EXPIRED)
                return False
            await asyncio.sleep(delay)

    def _settle(
        self, partition: int, job: SendPushes, addressed: AddressedPush, outcome: PushOutcome, attempt: int
    ) -> bool | None:
        """Act on one answer: True / False when the push is done (delivered or not), None to retry."""
        if outcome.actual_environment is not None:
            self._environment_mismatch(job, addressed, outcome)
        if outcome.kind is OutcomeKind.DELIVERED:
            return True
        if outcome.kind is OutcomeKind.TOKEN_DEAD:
            self._token_dead(partition, addressed, outcome)
            return False
        if outcome.kind is OutcomeKind.REQUEST_BUG or attempt >= self._retry.max_attempts:
            log.warning(
                "push_failed",
                chat_id=job.chat_id,
                provider=addressed.push.provider.value,
                outcome=outcome.kind.value,
                reason=outcome.reason,
                attempts=attempt,
            )
            return False
        return None

    def _skipped(self, provider: Provider, why: SkipReason) -> None:
        self._metrics.pushes_skipped.labels(provider.value, why.value).inc()

    async def _send_once(
        self, sender: PushSender, addressed: AddressedPush, job: SendPushes
    ) -> PushOutcome | None:
        """The provider's answer to one attempt, or None if the push was shed."""
        push = addressed.push
        provider = push.provider.value
        gate = self.gates[push.provider]
        if not gate.admit():
            return None
        async with gate.slot():
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
