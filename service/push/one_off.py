"""Sends a single push outside any round and returns what came of it: support's test push
(command `livechat.push.test_requested`, PushKind.TEST_ALERT).

The fan-out (fanout.py) is for rounds: it queues by deadline, reports `FanOutFinished` to the
round and drops a round's alerts when it closes. A test push has no round and its caller wants the
provider's answer itself, so `OneOffSender.send` awaits it directly, through the same senders
(`senders.build_senders`, one per configured provider), the same retry policy (transient answers
retried with backoff, never past the push's expiry) and the same outcome accounting
(`PushOutcomes.attempted`: one log line and the `notifier_pushes_total` / latency metrics per
request). It reports nothing: a dead token comes back as a `TOKEN_DEAD` outcome, and what to emit
for it (a `token_rejected` event, the test result) is the caller's business.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable

from service.clock import Clock
from service.domain.effects import AddressedPush
from service.domain.push import OutcomeKind, PushOutcome
from service.observability.metrics import Metrics
from service.push.base import PushSender
from service.push.push_outcomes import PushOutcomes, RetryPolicy


class OneOffSender:
    """Sends pushes one at a time, each to its provider's sender, and returns the outcome.

    For the command handler: build it in the composition root with the same senders as the
    fan-out; `await send(AddressedPush(DeviceRef(agent_id, device_id), push))` per device, where
    `push.kind` is `TEST_ALERT` (rendered as a visible alert in the alerts' channel, with the
    alerts' interruption level and sound, and no collapse id: README "Behaviour", test push).
    """

    def __init__(
        self,
        senders: Iterable[PushSender],
        metrics: Metrics,
        clock: Clock,
        *,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._senders = {sender.provider: sender for sender in senders}
        self._clock = clock
        self._retry = retry or RetryPolicy()
        self._backoff = self._retry.backoff(rng or random.Random())  # noqa: S311 -- jitter, not cryptography
        self._outcomes = PushOutcomes(metrics, clock, lambda _report: None)

    async def send(self, addressed: AddressedPush) -> PushOutcome | None:
        """The outcome of the last request for `addressed.push`; None when its provider has no
        sender (test result `not_configured`).

        `RETRY_LATER` answers are retried up to the policy's attempts, while the next attempt
        would start before the push's expiry; the last answer is returned (a `RETRY_LATER` then
        means the provider never took it: test result `failed`, with its reason).
        """
        push = addressed.push
        sender = self._senders.get(push.provider)
        if sender is None:
            return None
        attempt = 0
        while True:
            attempt += 1
            started = self._clock.monotonic()
            outcome = await sender.send(push)
            last = attempt >= self._retry.max_attempts
            delay = self._backoff.delay(attempt, outcome.retry_after_s)
            if outcome.kind is OutcomeKind.RETRY_LATER and not last:
                last = self._clock.now_ms() + delay * 1000 >= push.expires_at_ms
            self._outcomes.attempted(
                None,
                addressed,
                outcome,
                seconds=self._clock.monotonic() - started,
                attempt=attempt,
                last=last,
            )
            if outcome.actual_environment is not None:
                self._outcomes.environment_mismatch(None, addressed, outcome)
            if outcome.kind is not OutcomeKind.RETRY_LATER or last:
                return outcome
            await asyncio.sleep(delay)
