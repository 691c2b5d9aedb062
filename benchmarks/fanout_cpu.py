"""Worker CPU per delivered push on a fan-out heavy load (issue #13): many agents, each with an
Android phone (FCM) and an iPhone (APNs), all eligible for the site.

One worker process against both provider fakes (answering after `latency_s`); `agents` agents of
the site's account with two devices each, so every handoff fans out to 2 x `agents` pushes on both
providers. The driver produces `rate` handoffs/s for `seconds` and waits until every alert
arrived. Measured: the whole worker process's CPU (`/proc/PID/stat` user + system, all threads:
decisions, Kafka, logs, metrics, both senders) over that stream, per push a fake accepted; the
suite sets it next to the senders alone from the `push` section of the same run (1:1 FCM:APNs).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from benchmarks.latency import PROJECT, TOPIC, alert_arrivals, cpu_seconds, produce
from benchmarks.rig import ACCOUNT_ID, SITE_ID, Workers, fresh_settings, now_ms, schedstat, start_producer
from devtools import traffic
from devtools.credentials import generate_credentials
from devtools.fakes.apns import ApnsFake
from devtools.fakes.fcm import FcmFake
from service.settings import Settings

SIZES = {"smoke": (25, 20, 2.0), "full": (25, 20, 20.0)}
"""Agents (two devices each), handoffs/s, seconds, by suite scale: 1,000 pushes/s."""


async def publish_agents(producer: AIOKafkaProducer, settings: Settings, agents: int) -> None:
    site = traffic.site_updated(SITE_ID, ACCOUNT_ID, "Bench Tours", time_to_accept_seconds=120)
    await producer.send_and_wait(settings.topic_sites, key=SITE_ID.encode(), value=site)
    for n in range(agents):
        agent_id = f"agent-{n:03d}"
        phones = [
            traffic.device(f"{agent_id}-pixel", "fcm", f"{n:011d}:APA91b{'x' * 145}"),
            traffic.device(f"{agent_id}-iphone", "apns", f"{n:064x}"),
        ]
        value = traffic.agent_updated(agent_id, ACCOUNT_ID, sites={SITE_ID: True}, devices=phones)
        await producer.send(settings.topic_agents, key=agent_id.encode(), value=value)
    await producer.flush()


async def run(bootstrap: str, workdir: Path, scale: str, latency_s: float) -> dict[str, Any]:
    agents, rate, seconds = SIZES[scale]
    fcm = FcmFake(project_id=PROJECT, latency_s=latency_s)
    await fcm.start()
    credentials = generate_credentials(
        workdir / "fanout-credentials", fcm_token_uri=fcm.token_uri, fcm_project_id=PROJECT
    )
    fcm.trust_service_account(credentials.fcm_service_account)
    apns = ApnsFake(credentials, name="production", topic=TOPIC, latency_s=latency_s)
    await apns.start()
    settings = await fresh_settings(
        bootstrap,
        "fanout",
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
    workers = Workers.for_settings(settings, workdir / "logs" / "fanout")
    try:
        await publish_agents(producer, settings, agents)
        (worker,) = await workers.start(1)
        await producer.send_and_wait(
            settings.topic_chat_events,
            traffic.handoff_requested("warm-up", SITE_ID, now_ms(), time_to_accept_seconds=600),
            key=b"warm-up",
        )
        await fcm.messages.wait_for(lambda items: len(items) >= agents, 60.0)
        await apns.notifications.wait_for(lambda items: len(items) >= agents, 60.0)
        cpu_before, sched_before, started = (
            cpu_seconds(worker.process.pid),
            schedstat(worker.process.pid),
            time.monotonic(),
        )
        sent = await produce(producer, settings.topic_chat_events, rate, seconds)
        expected = len(sent) * 2 * agents
        give_up = time.monotonic() + 120.0

        def delivered() -> int:
            return sum(
                1 for chat, _ in alert_arrivals(fcm.messages.items, apns.notifications.items) if chat in sent
            )

        while delivered() < expected and time.monotonic() < give_up:  # noqa: ASYNC110 - two recorders
            await asyncio.sleep(0.2)
        cpu_s = cpu_seconds(worker.process.pid) - cpu_before
        waited = (schedstat(worker.process.pid)[1] - sched_before[1]) / 1e9 / (time.monotonic() - started)
        pushes = delivered()
    finally:
        await workers.stop()
        await producer.stop()
        await apns.stop()
        await fcm.stop()
    return {
        "agents": agents,
        "devices_per_handoff": 2 * agents,
        "handoffs_per_s": rate,
        "seconds": seconds,
        "provider_latency_s": latency_s,
        "pushes_expected": expected,
        "pushes_delivered": pushes,
        "worker_cpu_s": round(cpu_s, 3),
        "worker_cpu_us_per_push": round(cpu_s / pushes * 1e6, 1) if pushes else None,
        "worker_loop_waiting_for_cpu": round(waited, 3),
    }
