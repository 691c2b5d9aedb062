"""What a provider's answer leads to: the retry policy, and the one place where a push attempt's
outcome is counted and logged and a dead token reported.

The provider adapters (fcm.py, apns.py) only classify an answer into a `PushOutcome`; they log no
outcome. The fan-out calls `PushOutcomes.attempted` once per request, so every attempt gives
exactly one log line, named by what it means (docs/errors.md, "Push provider answers"):

| outcome | event | level |
|---|---|---|
| delivered | `push_sent` | info for an alert, a reminder or a test alert, debug for a closing update |
| token dead | `push_token_rejected` | info |
| request bug, or retry-later on the last attempt | `push_failed` | warning |
| retry-later with attempts left | `push_attempt_failed` | info |

Tokens are never logged: a dead one is reported by its SHA-256 fingerprint.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, assert_never

import structlog

from service.backoff import Backoff, Jitter
from service.clock import Clock
from service.domain.effects import AddressedPush, SendPushes
from service.domain.events import TokenRejection
from service.domain.push import OutcomeKind, Provider, Push, PushKind, PushOutcome, SkipReason
from service.domain.reports import DeviceRejected, FanOutReport
from service.observability.metrics import Metrics

log = structlog.get_logger(__name__)

MAY_HAVE_REACHED = frozenset({"timeout", "connection_error"})
"""`RETRY_LATER` reasons (fcm.py, apns.py) after which the request may have reached the provider
and the phone: no answer came back. A connection refused before sending is also reported as
`connection_error`; counting it as "may have reached" costs at most one silent closing update."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how far apart a push the provider refused for now is tried again."""

    base_s: float = 0.5
    cap_s: float = 30.0
    max_attempts: int = 6

    def backoff(self, rng: random.Random) -> Backoff:
        """Full-jitter delays after the n-th failed attempt, at least the provider's Retry-After."""
        return Backoff(self.base_s, self.cap_s, Jitter.FULL, rng)


def token_fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


class PushOutcomes:
    """Counts, logs and reports what the providers answered, for the fan-out."""

    def __init__(self, metrics: Metrics, clock: Clock, report: Callable[[FanOutReport], None]) -> None:
        self._metrics = metrics
        self._clock = clock
        self._report = report

    def skipped(self, provider: Provider, why: SkipReason) -> None:
        self._metrics.pushes_skipped.labels(provider.value, why.value).inc()

    def attempted(
        self,
        work: SendPushes | None,
        addressed: AddressedPush,
        outcome: PushOutcome,
        *,
        seconds: float,
        attempt: int,
        last: bool,
    ) -> None:
        """One request's answer: its metrics and its one log line. `last`: no retry may follow.
        `work`: the fan-out the push belongs to; None for a push sent on its own (`one_off.py`)."""
        push = addressed.push
        provider = push.provider.value
        self._metrics.push_latency.labels(provider).observe(seconds)
        self._metrics.pushes.labels(provider, push.kind.value, outcome.kind.value).inc()
        fields: dict[str, Any] = {} if work is None else {"chat_id": work.chat_id}
        fields |= {
            "agent_id": addressed.device.agent_id,
            "device_id": addressed.device.device_id,
            "provider": provider,
        }
        if push.provider is Provider.APNS:
            fields["environment"] = (outcome.actual_environment or push.apns_environment).value
        match outcome.kind:
            case OutcomeKind.DELIVERED:
                self._delivered(work, push, fields)
            case OutcomeKind.TOKEN_DEAD:
                log.info("push_token_rejected", reason=outcome.reason, **fields)
            case OutcomeKind.REQUEST_BUG:
                self._failed(push.kind, outcome, attempt, fields)
            case OutcomeKind.RETRY_LATER:
                if last:
                    self._failed(push.kind, outcome, attempt, fields)
                else:
                    log.info(
                        "push_attempt_failed",
                        kind=push.kind.value,
                        outcome=outcome.kind.value,
                        reason=outcome.reason,
                        attempt=attempt,
                        **fields,
                    )
            case _:
                assert_never(outcome.kind)

    def _delivered(self, work: SendPushes | None, push: Push, fields: dict[str, Any]) -> None:
        """Visible pushes log at info, closing updates at debug; only the first alert of a round
        measures the time from the request to the push (a reminder comes late on purpose)."""
        match push.kind:
            case PushKind.HANDOFF_REQUESTED:
                if work is not None:
                    seconds_to_push = max(0, self._clock.now_ms() - work.requested_at_ms) / 1000
                    self._metrics.handoff_to_push.labels(push.provider.value).observe(seconds_to_push)
                log.info("push_sent", kind=push.kind.value, **fields)
            case PushKind.HANDOFF_REMINDER | PushKind.TEST_ALERT:
                log.info("push_sent", kind=push.kind.value, **fields)
            case PushKind.HANDOFF_CLOSED:
                log.debug("push_sent", kind=push.kind.value, **fields)
            case _:
                assert_never(push.kind)

    @staticmethod
    def _failed(kind: PushKind, outcome: PushOutcome, attempts: int, fields: dict[str, Any]) -> None:
        log.warning(
            "push_failed",
            kind=kind.value,
            outcome=outcome.kind.value,
            reason=outcome.reason,
            attempts=attempts,
            **fields,
        )

    def environment_mismatch(
        self, work: SendPushes | None, addressed: AddressedPush, outcome: PushOutcome
    ) -> None:
        """The token belongs to the other APNs environment: the agent's snapshot needs fixing."""
        configured = addressed.push.apns_environment.value
        self._metrics.apns_environment_mismatches.labels(configured).inc()
        log.warning(
            "apns_environment_mismatch",
            **({} if work is None else {"chat_id": work.chat_id}),
            agent_id=addressed.device.agent_id,
            device_id=addressed.device.device_id,
            configured=configured,
            actual=outcome.actual_environment.value if outcome.actual_environment else None,
            outcome=outcome.kind.value,
            reason=outcome.reason,
        )

    def token_dead(self, partition: int, addressed: AddressedPush, outcome: PushOutcome) -> None:
        """Report the dead (device, token) pair; `attempted` has logged it."""
        push = addressed.push
        rejection = TokenRejection(
            agent_id=addressed.device.agent_id,
            device_id=addressed.device.device_id,
            provider=push.provider,
            reason=outcome.reason,
            token_fingerprint=token_fingerprint(push.token),
        )
        self._report(DeviceRejected(partition, rejection, push.token))
