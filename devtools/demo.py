"""Everything locally, with a story: `python -m devtools.demo` (what `scripts/local-up` runs).

Starts a real Kafka broker (jars from Maven Central), creates the topics with the worker's own
`topics ensure`, starts local FCM and APNs fakes, runs the worker as a separate process
(`livechat-notifier run`, configured only through NOTIFIER_* variables, as in production), and
plays a short story while printing what each party sees:

  1. a visitor asks for a human -> the eligible agents' phones buzz (and nobody else's);
  2. an agent joins -> every notified phone's alert is replaced by a quiet "taken by <name>";
  3. a second visitor waits: after the site's `reminder_after_seconds` the phones get one
     reminder, then nobody joins in time -> Missed event + chatbot message with the contacts;
  4. support sends a test push to the agent who is away -> her phone gets a test alert and
     `livechat.push.test_result` on the push-feedback topic says how each device fared.

Exit code 0 when every step was seen, 1 when one was not (it says which), else the worker's.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from aiohttp import ClientSession

from devtools import traffic
from devtools.credentials import generate_credentials
from devtools.fakes import Recorder
from devtools.fakes.apns import ApnsFake, ReceivedNotification
from devtools.fakes.fcm import FcmFake, ReceivedMessage
from devtools.kafka_broker import KafkaBroker
from devtools.kafka_io import Output, OutputReader, Publisher
from devtools.kafka_process import free_port

APNS_TOPIC = "com.example.livechat"
PHONES = {
    "fcm-anna": "anna's Pixel",
    "a1" * 32: "anna's iPhone",
    "b2" * 32: "ben's iPhone",
    "fcm-carla": "carla's Pixel",
}
COMMANDS_TOPIC = "livechat.notifier-commands"
FEEDBACK_TOPIC = "livechat.push-feedback"
STEP_TIMEOUT_S = 30.0
T = TypeVar("T")
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


@dataclass(frozen=True)
class Shown:
    """One push as the phone shows it."""

    phone: str
    kind: str | None
    chat_id: str | None
    text: str


def fcm_shown(message: ReceivedMessage) -> Shown:
    data = message.message.get("data") or {}
    notification = message.message.get("notification")
    channel = message.message.get("android", {}).get("notification", {}).get("channel_id")
    if isinstance(notification, dict):
        text = f'"{notification.get("title")}" — {notification.get("body")} (channel {channel})'
    else:
        text = f"data message {json.dumps(data)}"
    return Shown(
        PHONES.get(str(message.token), str(message.token)), data.get("type"), data.get("chat_id"), text
    )


def apns_shown(note: ReceivedNotification) -> Shown:
    aps = note.payload.get("aps", {})
    alert = aps.get("alert")
    if isinstance(alert, dict):
        level = aps.get("interruption-level", "active")
        text = f'"{alert.get("title")}" — {alert.get("body")} ({level}, sound {aps.get("sound", "none")})'
    else:
        text = f"silent update {json.dumps({k: v for k, v in note.payload.items() if k != 'aps'})}"
    kind, chat_id = note.payload.get("type"), note.payload.get("chat_id")
    return Shown(PHONES.get(note.token, note.token), kind, chat_id, text)


@dataclass
class Screen(Generic[T]):
    """One provider fake seen as the phones it reaches."""

    recorder: Recorder[T]
    shown: Callable[[T], Shown]

    def matching(self, items: Sequence[T], kind: str, chat_id: str | None) -> list[Shown]:
        seen = [self.shown(item) for item in items]
        return [s for s in seen if s.kind == kind and (chat_id is None or s.chat_id == chat_id)]

    async def wait(self, kind: str, chat_id: str | None, count: int) -> list[Shown]:
        items = await self.recorder.wait_for(
            lambda items: len(self.matching(items, kind, chat_id)) >= count, STEP_TIMEOUT_S
        )
        return self.matching(items, kind, chat_id)


class Story:
    """The demo's steps; a step whose outcome is not seen in time is reported and the story goes
    on (a feature under construction must not hide the others)."""

    def __init__(self) -> None:
        self.missing: list[str] = []

    async def phones(
        self, what: str, kind: str, chat_id: str | None, expected: Sequence[tuple[Screen[Any], int]]
    ) -> None:
        """Wait until each fake got `count` pushes of `kind` for `chat_id`, and print them."""
        try:
            shown = [s for screen, count in expected for s in await screen.wait(kind, chat_id, count)]
        except TimeoutError:
            self.missing.append(what)
            say("demo", f"NOT SEEN within {STEP_TIMEOUT_S:.0f} s: {what}")
            return
        for item in shown:
            say("phone", f"{item.phone} [{item.kind}]: {item.text}")

    async def output(
        self, what: str, reader: OutputReader, found: Callable[[], list[Output]]
    ) -> Output | None:
        try:
            await reader.wait_for(lambda: bool(found()), STEP_TIMEOUT_S, what)
        except AssertionError:
            self.missing.append(what)
            say("demo", f"NOT SEEN within {STEP_TIMEOUT_S:.0f} s: {what}")
            return None
        return found()[0]


async def run(workdir: Path, tta_missed: int, reminder_after: int) -> int:
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
    android = Screen(fcm.messages, fcm_shown)
    iphone = Screen(apns.notifications, apns_shown)
    sandbox_iphone = Screen(sandbox.notifications, apns_shown)

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
            reminder_after_seconds=reminder_after,
        ),
    )
    agents = {
        "anna": (
            [
                traffic.device("anna-pixel", "fcm", "fcm-anna"),
                traffic.device("anna-iphone", "apns", "a1" * 32),
            ],
            True,
            "Anna Keller",
        ),
        "ben": ([traffic.device("ben-iphone", "apns", "b2" * 32, apns_environment="sandbox")], True, None),
        "carla": ([traffic.device("carla-pixel", "fcm", "fcm-carla")], False, "Carla"),
    }
    for name, (devices, available, display_name) in agents.items():
        await publisher.send(
            "livechat.agents",
            name,
            traffic.agent_updated(
                name,
                "acct-1",
                available=available,
                sites={"site-alps": True},
                devices=devices,
                display_name=display_name,
            ),
        )
    say(
        "directory",
        f"site 'Alpine Tours' (accept within 60 s, remind after {reminder_after} s); agents anna "
        "'Anna Keller' (Android + iPhone), ben (iPhone, sandbox), carla (away)",
    )

    worker = await asyncio.create_subprocess_exec(*cli, "run", env=env, stdout=asyncio.subprocess.PIPE)
    assert worker.stdout is not None
    log_task = asyncio.create_task(pipe_worker_log(worker.stdout))
    reader = OutputReader(
        broker.bootstrap_servers, ["livechat.chat-missed", "livechat.chatbot-commands", FEEDBACK_TOPIC]
    )
    await reader.start()
    story = Story()
    everyone: list[tuple[Screen[Any], int]] = [(android, 1), (iphone, 1), (sandbox_iphone, 1)]
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
        await story.phones("the request's alerts", "handoff_requested", "chat-1001", everyone)
        say("phone", "carla is away: her phone stays silent")

        say("agent", "anna (Anna Keller) joins chat-1001")
        await publisher.send(
            "livechat.chat-events",
            "chat-1001",
            traffic.agent_joined("chat-1001", "site-alps", "anna", now_ms()),
        )
        await story.phones('the "taken by" closing updates', "handoff_closed", "chat-1001", everyone)

        say(
            "visitor",
            f"Bob asks for a human (chat-1002); nobody joins: a reminder after {reminder_after} s, "
            f"Missed after {tta_missed} s",
        )
        await publisher.send(
            "livechat.chat-events",
            "chat-1002",
            traffic.handoff_requested(
                "chat-1002", "site-alps", now_ms(), visitor={"name": "Bob"}, time_to_accept_seconds=tta_missed
            ),
        )
        await story.phones("the second request's alerts", "handoff_requested", "chat-1002", everyone)
        await story.phones("the reminders", "handoff_reminder", "chat-1002", everyone)
        chatbot = await story.output(
            "the Missed event and chatbot message",
            reader,
            lambda: reader.on("livechat.chatbot-commands", "chat-1002"),
        )
        missed = reader.on("livechat.chat-missed", "chat-1002")
        if chatbot is not None and chatbot.value is not None and missed and missed[0].value is not None:
            say("kafka", f"livechat.chat-missed: {json.dumps(missed[0].value['data'])}")
            say("chatbot", f'to Bob: "{chatbot.value["data"]["text"]}"')
        await story.phones("the missed closing updates", "handoff_closed", "chat-1002", everyone)

        command_id = "support-test-1"
        say("support", f"carla says her phone never buzzes: test push to carla ({command_id})")
        await publisher.send(
            COMMANDS_TOPIC, "carla", traffic.push_test_requested("carla", command_id=command_id)
        )
        await story.phones("the test push", "test_alert", None, [(android, 1)])
        result = await story.output(
            "the test result",
            reader,
            lambda: [
                o
                for o in reader.on(FEEDBACK_TOPIC, "carla")
                if o.value is not None and o.value.get("data", {}).get("request_id") == command_id
            ],
        )
        if result is not None and result.value is not None:
            say("kafka", f"{FEEDBACK_TOPIC} {result.value['type']}: {json.dumps(result.value['data'])}")

        async with ClientSession() as http, http.get(f"http://127.0.0.1:{http_port}/metrics") as response:
            metrics = await response.text()
        for line in metrics.splitlines():
            if line.startswith(
                (
                    "notifier_rounds_closed_total",
                    "notifier_pushes_total{",
                    "notifier_rounds_unreachable_total",
                    "notifier_request_to_accept_seconds_count",
                    "notifier_test_pushes_total",
                )
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
    if story.missing:
        say("demo", f"not shown: {'; '.join(story.missing)}")
        return 1
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
        "--missed-after", type=int, default=8, help="time to accept (s) of the chat nobody takes"
    )
    parser.add_argument(
        "--reminder-after",
        type=int,
        default=4,
        help="the site's reminder_after_seconds (below --missed-after)",
    )
    args = parser.parse_args()
    if not 0 < args.reminder_after < args.missed_after:
        parser.error("--reminder-after must be at least 1 and below --missed-after")
    with tempfile.TemporaryDirectory(prefix="livechat-demo-") as workdir:
        sys.exit(asyncio.run(run(Path(workdir), args.missed_after, args.reminder_after)))


if __name__ == "__main__":
    main()
