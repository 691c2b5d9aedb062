"""What a queued push really costs in memory, next to the fan-out's own estimate (`push_size`).

`python -m benchmarks.push_queue_memory` builds 2,000 rounds of 10 alert pushes shaped like the
core's (FCM-length tokens, the alert's data keys, a title and a body), queues them behind a
provider that never answers, and prints tracemalloc's bytes per push: the pushes themselves, the
fan-out's bookkeeping, and the estimate the memory bound (`push_queue_max_bytes`) counts. Results:
docs/benchmarks.md, "Push burst".
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

from service.clock import SystemClock
from service.domain.effects import AddressedPush, SendPushes
from service.domain.push import AuthHealth, Provider, Push, PushKind, PushOutcome
from service.domain.rounds import DeviceRef
from service.observability.metrics import Metrics
from service.push.fanout import FanOut

ROUNDS = 2_000
DEVICES = 10


class _NeverAnswers:
    provider = Provider.FCM
    auth = AuthHealth()

    async def send(self, push: Push) -> PushOutcome:  # noqa: ARG002 -- the protocol's signature
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        return None


def _rounds() -> list[SendPushes]:
    jobs = []
    for r in range(ROUNDS):
        chat = f"chat-{r:08d}-0000-aaaa-bbbb"
        pushes = []
        for d in range(DEVICES):
            data = {
                "type": "handoff_requested",
                "chat_id": chat,
                "site_id": "site-123456",
                "request_id": f"{r:08x}-1111-2222-3333-444455556666",
                "open_tab": "active",
            }
            push = Push(
                Provider.FCM,
                f"fcm-token-{r}-{d}-" + "x" * 140,
                PushKind.HANDOFF_REQUESTED,
                chat,
                2_000_000_000_000,
                data,
                "New chat on Alpine Tours",
                "Ada is waiting for an agent",
            )
            pushes.append(AddressedPush(DeviceRef(f"agent-{d}", f"device-{d}"), push))
        jobs.append(SendPushes(chat, f"req-{r}", 0, tuple(pushes), report_delivery=True))
    return jobs


async def _measure() -> None:
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    jobs = _rounds()
    built = tracemalloc.get_traced_memory()[0]
    fan_out = FanOut(
        {Provider.FCM: _NeverAnswers()}, Metrics([]), SystemClock(), lambda _: None, max_in_flight=1
    )
    for job in jobs:
        fan_out.submit(0, job)
    await asyncio.sleep(0)
    queued = tracemalloc.get_traced_memory()[0]
    n = ROUNDS * DEVICES
    estimate = fan_out.queues[Provider.FCM].held_bytes
    print(  # the benchmark's output
        f"{n} pushes: the pushes {(built - start) / n:.0f} B each, the fan-out's bookkeeping "
        f"{(queued - built) / n:.0f} B, together {(queued - start) / n:.0f} B; estimate {estimate / n:.0f} B"
    )
    await fan_out.close(0)


if __name__ == "__main__":
    asyncio.run(_measure())
