"""Everything locally, with a story: `python -m devtools.demo` (what `scripts/local-up` runs).

Starts a real Kafka broker (jars from Maven Central), creates the topics with the worker's own
`topics ensure`, starts local FCM and APNs fakes, runs the worker as a separate process
(`livechat-notifier run`, configured only through NOTIFIER_* variables, as in production), and
plays a short story while printing what each party sees:

  1. a visitor asks for a human -> the eligible agents' phones buzz (and nobody else's);
  2. an agent joins -> every notified phone is told, silently, that the chat was taken;
  3. a second visitor waits in vain -> Missed event + chatbot message with the contact details.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import ClientSession

from devtools import traffic
from devtools.credentials import generate_credentials
from devtools.fakes.apns import ApnsFake
from devtools.fakes.fcm import FcmFake
from devtools.kafka_broker import KafkaBroker
from devtools.kafka_io import OutputReader, Publisher
from devtools.kafka_process import free_port

APNS_TOPIC = "com.example.livechat"
WORKER_EVENTS = {"worker_starting", "directories_loaded", "partition_restored", "push_sent", "round_closed"}


def say(who: str, text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}  {who:<10} {text}", flush=True)


async def pipe_worker_log(stream: asyncio.StreamReader) -> None:
    """Show the worker's JSON log lines that tell the story, one short line each."""
    while line := await stream.readline():
        try:
            entry: dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        event = entry.get("event")
        if event in WORKER_EVENTS or entry.get("level") in {"warning", "error"}:
            fields = {
                k: v
                for k, v in entry.items()
                if k in {"chat_id", "provider", "outcome", "partition", "agent_id"}
            }
            say("worker", f"{event} {' '.join(f'{k}={v}' for k, v in fields.items())}")


async def run(workdir: Path, tta_missed: int) -> int:
    broker = KafkaBroker(workdir / "kafka")
    say("kafka", "starting a single-node Kafka broker (first run downloads its jars with Maven)...")
    await asyncio.to_thread(broker.start)
    say("kafka", f"ready on {broker.bootstrap_servers} (Kafka {broker.version})")
    fcm = FcmFake(project_id="livechat-demo")
    await fcm.start()
    creds = generate_credentials(
        workdir / "credentials", fcm_token_uri=fcm.token_uri, fcm_project_id="livechat-demo"
    )
    fcm.trust_service_account(creds.fcm_service_account)
    apns = ApnsFake(creds, name="production", topic=APNS_TOPIC)
    sandbox = ApnsFake(creds, name="sandbox", topic=APNS_TOPIC)
    await apns.start()
    await sandbox.start()
    say("fakes", f"FCM on {fcm.url}, APNs on {apns.url} (production) and {sandbox.url} (sandbox)")

    http_port = free_port()
    env = os.environ | {
        "NOTIFIER_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "NOTIFIER_FCM_CREDENTIALS_FILE": str(creds.fcm_service_account),
        "NOTIFIER_FCM_ENDPOINT": fcm.url,
        "NOTIFIER_APNS_KEY_FILE": str(creds.apns_key),
        "NOTIFIER_APNS_KEY_ID": creds.apns_key_id,
        "NOTIFIER_APNS_TEAM_ID": creds.apns_team_id,
        "NOTIFIER_APNS_TOPIC": APNS_TOPIC,
        "NOTIFIER_APNS_ENDPOINT": apns.url,
        "NOTIFIER_APNS_SANDBOX_ENDPOINT": sandbox.url,
        "NOTIFIER_APNS_CA_FILE": str(creds.ca_cert),
        "NOTIFIER_HTTP_HOST": "127.0.0.1",
        "NOTIFIER_HTTP_PORT": str(http_port),
    }
    cli = [sys.executable, "-m", "service"]
    ensure = await asyncio.create_subprocess_exec(
        *cli, "topics", "ensure", "--partitions", "3", "--replication-factor", "1", env=env
    )
    if await ensure.wait() != 0:
        raise RuntimeError("topics ensure failed")
    say("kafka", "topics created by `livechat-notifier topics ensure`")

    publisher = Publisher(broker.bootstrap_servers)
    await publisher.start()
    await publisher.send(
        "livechat.sites",
        "site-alps",
        traffic.site_updated(
            "site-alps",
            "acct-1",
            "Alpine Tours",
            time_to_accept_seconds=60,
            email="bookings@alpine.example",
            phone="+41 44 555 01 01",
        ),
    )
    agents = {
        "anna": (
            [
                traffic.device("anna-pixel", "fcm", "fcm-anna"),
                traffic.device("anna-iphone", "apns", "a1" * 32),
            ],
            True,
        ),
        "ben": ([traffic.device("ben-iphone", "apns", "b2" * 32, apns_environment="sandbox")], True),
        "carla": ([traffic.device("carla-pixel", "fcm", "fcm-carla")], False),
    }
    for name, (devices, available) in agents.items():
        await publisher.send(
            "livechat.agents",
            name,
            traffic.agent_updated(
                name, "acct-1", available=available, sites={"site-alps": True}, devices=devices
            ),
        )
    say(
        "directory",
        "site 'Alpine Tours' (accept within 60 s); agents anna (Android + iPhone), "
        "ben (iPhone, sandbox), carla (away)",
    )

    worker = await asyncio.create_subprocess_exec(*cli, "run", env=env, stdout=asyncio.subprocess.PIPE)
    assert worker.stdout is not None
    log_task = asyncio.create_task(pipe_worker_log(worker.stdout))
    reader = OutputReader(broker.bootstrap_servers, ["livechat.chat-missed", "livechat.chatbot-commands"])
    await reader.start()
    try:
        await wait_ready(http_port)
        say("worker", f"ready: http://127.0.0.1:{http_port}/metrics")

        say("visitor", "Ada on Alpine Tours asks the chatbot for a human (chat-1001)")
        await publisher.send(
            "livechat.chat-events",
            "chat-1001",
            traffic.handoff_requested(
                "chat-1001", "site-alps", now_ms(), visitor={"name": "Ada", "email": "ada@visitor.example"}
            ),
        )
        await fcm.messages.wait_for(lambda items: len(items) >= 1, 30)
        await apns.notifications.wait_for(lambda items: len(items) >= 1, 30)
        await sandbox.notifications.wait_for(lambda items: len(items) >= 1, 30)
        for message in fcm.messages.items:
            notification = message.message["notification"]
            say("phone", f'{message.token}: "{notification["title"]}" — {notification["body"]}')
        for note in apns.notifications.items + sandbox.notifications.items:
            alert = note.payload["aps"]["alert"]
            say("phone", f'iPhone ({note.fake}): "{alert["title"]}" — {alert["body"]}')
        say("phone", "carla is away: her phone stays silent")

        say("agent", "anna joins chat-1001")
        await publisher.send(
            "livechat.chat-events",
            "chat-1001",
            traffic.agent_joined("chat-1001", "site-alps", "anna", now_ms()),
        )
        await fcm.messages.wait_for(lambda items: len(items) >= 2, 30)
        await sandbox.notifications.wait_for(lambda items: len(items) >= 2, 30)
        closing = sandbox.notifications.items[-1]
        update = f"type={closing.payload['type']} outcome={closing.payload['outcome']}"
        say("phone", f"ben's iPhone gets a silent update: {update} (the app clears the alert)")

        say("visitor", f"Bob asks for a human (chat-1002); nobody will join within {tta_missed} s")
        await publisher.send(
            "livechat.chat-events",
            "chat-1002",
            traffic.handoff_requested(
                "chat-1002", "site-alps", now_ms(), visitor={"name": "Bob"}, time_to_accept_seconds=tta_missed
            ),
        )
        await reader.wait_for(
            lambda: bool(reader.on("livechat.chatbot-commands", "chat-1002")), tta_missed + 30, "Missed"
        )
        [missed] = reader.on("livechat.chat-missed", "chat-1002")
        [chatbot] = reader.on("livechat.chatbot-commands", "chat-1002")
        assert missed.value is not None
        assert chatbot.value is not None
        say("kafka", f"livechat.chat-missed: {json.dumps(missed.value['data'])}")
        say("chatbot", f'to Bob: "{chatbot.value["data"]["text"]}"')
        async with ClientSession() as http, http.get(f"http://127.0.0.1:{http_port}/metrics") as response:
            metrics = await response.text()
        for line in metrics.splitlines():
            if line.startswith(
                ("notifier_rounds_closed_total", "notifier_pushes_total{")
            ) and not line.endswith(" 0.0"):
                say("metrics", line)
        say("demo", "done — stopping the worker with SIGTERM")
    finally:
        worker.send_signal(signal.SIGTERM)
        code = await worker.wait()
        await log_task
        say("worker", f"exited with {code}")
        await reader.stop()
        await publisher.stop()
        await apns.stop()
        await sandbox.stop()
        await fcm.stop()
        await asyncio.to_thread(broker.stop)
    return code


async def wait_ready(port: int, timeout: float = 90.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    async with ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError("the worker did not become ready")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--missed-after", type=int, default=5, help="time to accept (s) of the chat nobody takes"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="livechat-demo-") as workdir:
        sys.exit(asyncio.run(run(Path(workdir), args.missed_after)))


if __name__ == "__main__":
    main()
