"""Handoff-to-push latency: from producing `handoff_requested` to the provider fake accepting the push.

One worker process with FCM and APNs configured against the fakes (each answering after
`latency_s`); one agent with five devices (three FCM, two APNs). The driver produces `rate`
handoff requests per second for `seconds`, noting `time.monotonic()` just before handing each to
its producer; the fakes note `time.monotonic()` (the same system-wide clock) when a push arrives.
Pushes are matched to requests by chat id; only the alert pushes count.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from benchmarks.rig import (
    SITE_ID,
    Workers,
    fresh_settings,
    now_ms,
    publish_directory,
    schedstat,
    start_producer,
)
from devtools import traffic
from devtools.credentials import generate_credentials
from devtools.fakes.apns import ApnsFake, ReceivedNotification
from devtools.fakes.fcm import FcmFake, ReceivedMessage

DEVICES = 5
TOPIC = "com.example.livechat.bench"
PROJECT = "bench-latency"


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "p50_ms": round(percentile(values, 0.50) * 1e3, 2),
        "p99_ms": round(percentile(values, 0.99) * 1e3, 2),
        "max_ms": round(max(values) * 1e3, 2),
        "mean_ms": round(statistics.fmean(values) * 1e3, 2),
    }


async def produce(producer: AIOKafkaProducer, topic: str, rate: int, seconds: float) -> dict[str, float]:
    """`rate` requests per second, evenly spaced; {chat id: monotonic time just before producing}."""
    sent: dict[str, float] = {}
    total = int(rate * seconds)
    started = time.monotonic()
    futures = []
    for i in range(total):
        due = started + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        chat_id = f"lat-{i:08d}"
        value = traffic.handoff_requested(chat_id, SITE_ID, now_ms(), time_to_accept_seconds=600)
        sent[chat_id] = time.monotonic()
        futures.append(await producer.send(topic, value, key=chat_id.encode()))
    await asyncio.gather(*futures)
    return sent


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process `pid` so far, all its threads (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alert_arrivals(
    fcm: Sequence[ReceivedMessage], apns: Sequence[ReceivedNotification]
) -> list[tuple[str, float]]:
    arrivals = [
        (m.message["data"]["chat_id"], m.received_at)
        for m in fcm
        if m.message.get("data", {}).get("type") == "handoff_requested"
    ]
    arrivals += [
        (str(n.payload["chat_id"]), n.received_at)
        for n in apns
        if n.payload.get("type") == "handoff_requested"
    ]
    return arrivals


async def run(bootstrap: str, workdir: Path, rate: int, seconds: float, latency_s: float) -> dict[str, Any]:
    fcm = FcmFake(project_id=PROJECT, latency_s=latency_s)
    await fcm.start()
    credentials = generate_credentials(
        workdir / "latency-credentials", fcm_token_uri=fcm.token_uri, fcm_project_id=PROJECT
    )
    fcm.trust_service_account(credentials.fcm_service_account)
    apns = ApnsFake(credentials, name="production", topic=TOPIC, latency_s=latency_s)
    await apns.start()
    settings = await fresh_settings(
        bootstrap,
        "latency",
        4,
        fcm_credentials_file=credentials.fcm_service_account,
        fcm_endpoint=fcm.url,
        apns_key_file=credentials.apns_key,
        apns_key_id=credentials.apns_key_id,
        apns_team_id=credentials.apns_team_id,
        apns_topic=TOPIC,
        apns_endpoint=apns.url,
        apns_sandbox_endpoint=apns.url,
        apns_ca_file=credentials.ca_cert,
    )
    producer = start_producer(bootstrap, linger_ms=0)
    await producer.start()
    workers = Workers.for_settings(settings, workdir / "logs" / "latency")
    try:
        await publish_directory(producer, settings, devices=DEVICES)
        await workers.start(1)
        # One warm-up request: connections and tokens are made before the clock runs.
        await producer.send_and_wait(
            settings.topic_chat_events,
            traffic.handoff_requested("warm-up", SITE_ID, now_ms(), time_to_accept_seconds=600),
            key=b"warm-up",
        )
        await fcm.messages.wait_for(lambda items: len(items) >= 3, 60.0)
        await apns.notifications.wait_for(lambda items: len(items) >= 2, 60.0)
        (worker,) = workers.fleet.workers.values()
        cpu_before, sched_before, started = (
            cpu_seconds(worker.process.pid),
            schedstat(worker.process.pid),
            time.monotonic(),
        )
        sent = await produce(producer, settings.topic_chat_events, rate, seconds)
        expected = len(sent) * DEVICES
        give_up = time.monotonic() + 60.0
        # Two fakes' recorders to watch: poll. What is still missing then is reported as missing.
        while _count(fcm, apns, sent) < expected and time.monotonic() < give_up:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        worker_cpu_s = cpu_seconds(worker.process.pid) - cpu_before
        sched_after, elapsed = schedstat(worker.process.pid), time.monotonic() - started
        arrivals = alert_arrivals(fcm.messages.items, apns.notifications.items)
    finally:
        await workers.stop()
        await producer.stop()
        await apns.stop()
        await fcm.stop()
    latencies = [at - sent[chat] for chat, at in arrivals if chat in sent]
    return {
        "rate_handoffs_per_s": rate,
        "seconds": seconds,
        "devices_per_handoff": DEVICES,
        "provider_latency_s": latency_s,
        "pushes_expected": expected,
        "pushes_received": len(latencies),
        # Issue #13: the whole worker process's CPU (decisions, Kafka, logs, metrics, both
        # senders) per push a fake accepted, over the measured stream (warm-up excluded).
        "worker_cpu_s": round(worker_cpu_s, 3),
        # Share of the measured time the worker's event-loop thread waited for a CPU while ready to run.
        "worker_loop_waiting_for_cpu": round((sched_after[1] - sched_before[1]) / 1e9 / elapsed, 3),
        "worker_cpu_us_per_push": round(worker_cpu_s / len(latencies) * 1e6, 1) if latencies else None,
        **summary_ms(latencies),
    }


def _count(fcm: FcmFake, apns: ApnsFake, sent: dict[str, float]) -> int:
    return sum(1 for chat, _ in alert_arrivals(fcm.messages.items, apns.notifications.items) if chat in sent)
