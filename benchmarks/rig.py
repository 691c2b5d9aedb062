"""What the suite's benchmarks share: topics of their own on one broker, worker processes, fast
fills of the chat-events topic, `/metrics` scraping and process memory.

Every benchmark runs the worker as deployed (`python -m service run`, a process of its own,
configured through NOTIFIER_* variables by `devtools.chaos.fleet`) against the suite's one real
broker; the driver (this process) only produces input, reads outputs and samples metrics.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import ClientError, ClientSession
from aiokafka import AIOKafkaProducer

from devtools import traffic
from devtools.chaos.fleet import Fleet, Worker, worker_env
from devtools.kafka_io import isolated_settings
from service.settings import Settings

SITE_ID = "site-bench"
ACCOUNT_ID = "acct-bench"
_counter = itertools.count()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def fresh_settings(bootstrap: str, name: str, partitions: int, **overrides: Any) -> Settings:
    """Settings with topics and a group of their own (prefixed by `name`), the topics created.

    Overrides win over the generated names, so two runs can share an input topic
    (`topic_chat_events=...`) while keeping their own group, changelog and outputs.
    """
    prefix = f"b{next(_counter)}-{name}-{now_ms() % 10**7}"
    return await isolated_settings(
        bootstrap, prefix, partitions, **{"kafka_session_timeout_ms": 10_000} | overrides
    )


@dataclass
class Workers:
    """A fleet of worker processes with the same settings (one consumer group)."""

    fleet: Fleet

    @classmethod
    def for_settings(cls, settings: Settings, log_dir: Path) -> Workers:
        log_dir.mkdir(parents=True, exist_ok=True)
        return cls(Fleet(worker_env(settings) | {"NOTIFIER_LOG_LEVEL": "INFO"}, log_dir))

    async def start(self, count: int, timeout: float = 120.0) -> list[Worker]:  # noqa: ASYNC109
        names = [f"worker-{i}" for i in range(count)]
        started = [await self.fleet.start(name) for name in names]
        await asyncio.gather(*(self.fleet.wait_ready(name, timeout) for name in names))
        return started

    async def stop(self) -> None:
        await self.fleet.stop_all()


async def scrape(worker: Worker) -> dict[str, float]:
    """The worker's `/metrics`, summed over labels: {metric name (with suffix): value}."""
    totals: dict[str, float] = {}
    try:
        async with (
            ClientSession() as http,
            http.get(f"http://127.0.0.1:{worker.http_port}/metrics") as response,
        ):
            text = await response.text()
    except (ClientError, OSError):
        return totals
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        if name.endswith("_bucket"):
            le = name_labels.rsplit('le="', 1)[-1].split('"', 1)[0]
            name = f"{name}[{le}]"
        try:
            totals[name] = totals.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return totals


async def metric_sum(workers: Iterable[Worker], name: str) -> float:
    values = await asyncio.gather(*(scrape(worker) for worker in workers))
    return sum(v.get(name, 0.0) for v in values)


def rss_bytes(pid: int) -> int:
    """Resident set size of process `pid` (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def publish_directory(producer: AIOKafkaProducer, settings: Settings, devices: int = 0) -> None:
    """One site and one agent of its account with push on and `devices` devices (FCM, then APNs)."""
    site = traffic.site_updated(SITE_ID, ACCOUNT_ID, "Bench Tours", time_to_accept_seconds=120)
    await producer.send_and_wait(settings.topic_sites, key=SITE_ID.encode(), value=site)
    phones = [
        traffic.device(f"device-{i}", "fcm" if i % 2 == 0 else "apns", f"{'ab' * 16}{i:032x}")
        for i in range(devices)
    ]
    agent = traffic.agent_updated("agent-bench", ACCOUNT_ID, sites={SITE_ID: True}, devices=phones)
    await producer.send_and_wait(settings.topic_agents, key=b"agent-bench", value=agent)


def start_producer(bootstrap: str, **options: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **options)


async def fill_rounds(
    bootstrap: str,
    topic: str,
    partitions: int,
    rounds: int,
    *,
    first: int = 0,
    tta_s: int = 3600,
    close: bool = True,
    prefix: str = "chat",
) -> int:
    """Append `rounds` rounds to the chat-events topic as fast as the producer can batch them:
    for round i a `handoff_requested` and (if `close`) an `agent_joined` (even i) or `ended` (odd i),
    both in partition i % partitions. Returns the number of events written."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_batch_size=1_048_576, linger_ms=20
    )
    await producer.start()
    written = 0
    try:
        batches = [producer.create_batch() for _ in range(partitions)]
        pending: list[asyncio.Future[Any]] = []
        at = now_ms()

        async def append(partition: int, key: bytes, value: bytes) -> None:
            if batches[partition].append(key=key, value=value, timestamp=None) is None:
                pending.append(await producer.send_batch(batches[partition], topic, partition=partition))
                batches[partition] = producer.create_batch()
                batches[partition].append(key=key, value=value, timestamp=None)
            if len(pending) > 32:
                await asyncio.gather(*pending)
                pending.clear()

        for i in range(first, first + rounds):
            chat_id = f"{prefix}-{i:010d}"
            partition = i % partitions
            key = chat_id.encode()
            request = traffic.handoff_requested(
                chat_id, SITE_ID, at, time_to_accept_seconds=tta_s, event_id=f"req-{chat_id}"
            )
            await append(partition, key, request)
            written += 1
            if close:
                closing = (
                    traffic.agent_joined(chat_id, SITE_ID, "agent-bench", at + 1)
                    if i % 2 == 0
                    else traffic.chat_ended(chat_id, SITE_ID, at + 1)
                )
                await append(partition, key, closing)
                written += 1
        for partition, batch in enumerate(batches):
            if batch.record_count():
                pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return written


def schedstat(pid: int) -> tuple[int, int]:
    """Nanoseconds the main thread (a worker's event loop) of process `pid` ran on a CPU and
    waited in a run queue for one, so far (/proc/PID/schedstat)."""
    on_cpu, waiting, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    return int(on_cpu), int(waiting)


def ratio(measured: float, baseline: float) -> float | None:
    return round(measured / baseline, 3) if baseline else None
