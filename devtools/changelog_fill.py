"""Write many pending rounds straight into a changelog partition, fast (for restore tests and
benchmarks): what a worker would leave behind after accepting that many handoff requests."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from service.domain.rounds import DeviceRef, PendingRound
from service.state.changelog import encode_state

TARGETS = (DeviceRef("agent-0001", "device-0001"), DeviceRef("agent-0002", "device-0002"))


def pending_round(index: int, requested_at_ms: int, deadline_ms: int) -> PendingRound:
    return PendingRound(
        request_id=f"req-{index:010d}",
        chat_id=f"chat-{index:010d}",
        site_id="site-0001",
        requested_at_ms=requested_at_ms,
        deadline_ms=deadline_ms,
        targets=TARGETS,
        delivered=TARGETS,
    )


async def fill_changelog(
    bootstrap: str, topic: str, partition: int, rounds: int, requested_at_ms: int, deadline_ms: int
) -> None:
    """Append `rounds` pending rounds (all with the same deadline) to `topic`/`partition`."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_batch_size=1_048_576, linger_ms=20
    )
    await producer.start()
    try:
        pending: list[asyncio.Future[object]] = []
        batch = producer.create_batch()
        for index in range(rounds):
            state = pending_round(index, requested_at_ms, deadline_ms)
            if batch.append(key=state.chat_id.encode(), value=encode_state(state), timestamp=None) is None:
                pending.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=state.chat_id.encode(), value=encode_state(state), timestamp=None)
            if len(pending) > 32:
                await asyncio.gather(*pending)
                pending.clear()
        pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
