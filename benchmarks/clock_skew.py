"""Why the backlog gate reads the broker's clock (LogAppendTime) — measured on the real broker.

`python -m benchmarks.clock_skew [--chats N] [--json FILE]`

The scenario of issue #10 item 1, with worker processes. While the worker is down, three
producers write to the chat-events topic, interleaved chat by chat:
  * the chat backend (accurate clock): a `handoff_requested` with 3 s to accept, then, half a
    second later by its stamp, the `agent_joined` that beats the deadline;
  * a service whose clock runs `skew` ahead: an unrelated request for another chat, its record
    stamped (CreateTime) by that clock;
  * and, for every tenth chat, no join: a round that is really missed.
Once every deadline has passed, one worker starts and catches up, reading at most 50 records per
turn. A deadline may fire only after the records stamped before it were read; a record stamped in
the future by the fast clock lets deadlines fire before the joins that beat them are read: a
*false Missed*. Each variant counts false Missed, checks every real one came, and reports how long
after the worker was ready the last real Missed came (what the tolerance costs).

Variants: CreateTime without tolerance (the gate before #10), CreateTime with the default
`producer_clock_tolerance_seconds` (30) against a skew inside and one beyond it, and LogAppendTime
(what `topics ensure` creates) against a ten-minute skew.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from benchmarks.rig import (
    SITE_ID,
    Workers,
    fresh_settings,
    now_ms,
    publish_directory,
    start_producer,
)
from devtools import traffic
from devtools.kafka_broker import KafkaBroker
from devtools.kafka_io import OutputReader

TTA_S = 3
MISSED_EVERY = 10


@dataclass(frozen=True)
class Variant:
    name: str
    timestamp_type: str
    tolerance_s: int
    skew_s: int


VARIANTS = (
    Variant("CreateTime, no tolerance (before #10)", "CreateTime", 0, 20),
    Variant("CreateTime, tolerance 30 s, skew 20 s", "CreateTime", 30, 20),
    Variant("CreateTime, tolerance 30 s, skew 60 s", "CreateTime", 30, 60),
    Variant("LogAppendTime, skew 600 s", "LogAppendTime", 30, 600),
)


async def _set_timestamp_type(bootstrap: str, topic: str, timestamp_type: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, {"message.timestamp.type": timestamp_type})
        await admin.alter_configs([resource])
    finally:
        await admin.close()


async def run_variant(bootstrap: str, workdir: Path, variant: Variant, chats: int) -> dict[str, Any]:
    settings = await fresh_settings(
        bootstrap,
        "skew",
        1,
        kafka_max_batch_records=50,
        producer_clock_tolerance_seconds=variant.tolerance_s,
    )
    await _set_timestamp_type(bootstrap, settings.topic_chat_events, variant.timestamp_type)
    producer = start_producer(bootstrap, linger_ms=5)
    await producer.start()
    topic = settings.topic_chat_events
    try:
        await publish_directory(producer, settings)
        at = now_ms()
        really_missed = set()
        for i in range(chats):
            chat_id = f"chat-{i:06d}"
            request = traffic.handoff_requested(chat_id, SITE_ID, at, time_to_accept_seconds=TTA_S)
            await producer.send(topic, request, key=chat_id.encode())
            noise_id = f"noise-{i:06d}"
            noise = traffic.handoff_requested(noise_id, SITE_ID, at, time_to_accept_seconds=600)
            await producer.send(topic, noise, key=noise_id.encode(), timestamp_ms=at + variant.skew_s * 1000)
            if i % MISSED_EVERY == 0:
                really_missed.add(chat_id)
            else:
                join = traffic.agent_joined(chat_id, SITE_ID, "agent-bench", at + 500)
                await producer.send(topic, join, key=chat_id.encode(), timestamp_ms=at + 500)
        await producer.flush()
    finally:
        await producer.stop()
    # The worker is down until every deadline has passed (wall-clock time is the point here).
    await asyncio.sleep(max(0.0, (at + TTA_S * 1000 + 1_000 - now_ms()) / 1000))

    outputs = OutputReader(bootstrap, [settings.topic_missed])
    await outputs.start()
    workers = Workers.for_settings(settings, workdir / "logs")
    try:
        await workers.start(1)
        ready_ms = now_ms()

        def missed_keys() -> set[str]:
            return {o.key for o in outputs.on(settings.topic_missed) if o.key is not None}

        await outputs.wait_for(lambda: really_missed <= missed_keys(), 120, "every real Missed")
        last_real_ms = now_ms()
        # A sentinel round with a later deadline on the same (single) partition: once its Missed
        # is visible, every earlier record was read and every earlier deadline handled.
        sentinel = start_producer(bootstrap)
        await sentinel.start()
        try:
            value = traffic.handoff_requested("sentinel", SITE_ID, now_ms(), time_to_accept_seconds=1)
            await sentinel.send_and_wait(topic, value, key=b"sentinel")
        finally:
            await sentinel.stop()
        await outputs.wait_for(lambda: "sentinel" in missed_keys(), 60, "the sentinel's Missed")
        missed = missed_keys()
    finally:
        await workers.stop()
        await outputs.stop()
    false_missed = sorted(k for k in missed if k.startswith("chat-") and k not in really_missed)
    return {
        **asdict(variant),
        "chats": chats,
        "joined_in_time": chats - len(really_missed),
        "false_missed": len(false_missed),
        "real_missed": len(really_missed & missed),
        "real_missed_expected": len(really_missed),
        "last_real_missed_after_ready_ms": last_real_ms - ready_ms,
    }


async def main(chats: int, out: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="clock-skew-") as tmp:
        workdir = Path(tmp)
        broker = KafkaBroker(workdir / "broker")
        await asyncio.to_thread(broker.start)
        try:
            results = [
                await run_variant(broker.bootstrap_servers, workdir / f"v{i}", v, chats)
                for i, v in enumerate(VARIANTS)
            ]
        finally:
            await asyncio.to_thread(broker.stop)
    print("| variant | false Missed / joined in time | real Missed | last real Missed after ready |")
    print("|---|---|---|---|")
    for r in results:
        print(
            f"| {r['name']} | {r['false_missed']} / {r['joined_in_time']} | "
            f"{r['real_missed']} / {r['real_missed_expected']} | {r['last_real_missed_after_ready_ms']} ms |"
        )
    if out is not None:
        await asyncio.to_thread(
            out.write_text,
            json.dumps(
                {"measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "results": results},
                indent=2,
            )
            + "\n",
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chats", type=int, default=300)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    asyncio.run(main(args.chats, args.json))
