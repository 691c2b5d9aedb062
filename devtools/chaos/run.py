"""One fault-injection run: broker, topics, workers, generator, controller, checker, report."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from devtools import traffic
from devtools.chaos.fleet import Fleet, worker_env
from devtools.chaos.plan import Fate, PlannedRound, plan_rounds
from devtools.kafka_broker import KafkaBroker
from devtools.kafka_io import OutputReader, isolated_names
from service.kafka.topics import ensure_topics
from service.settings import Settings

SITE = "site-chaos"
SESSION_TIMEOUT_MS = 6_000


@dataclass(frozen=True)
class ChaosConfig:
    seed: int = 1
    rounds: int = 300
    rate_per_s: float = 10.0
    tta_range: tuple[int, int] = (3, 6)
    partitions: int = 6
    kills: int = 4
    graceful_restarts: int = 1
    pauses: int = 1
    broker_restarts: int = 1
    scale_to: int = 3


@dataclass
class Report:
    seed: int
    rounds: int = 0
    fates: dict[str, int] = field(default_factory=dict)
    kills: int = 0
    graceful_restarts: int = 0
    graceful_exit_codes: list[int] = field(default_factory=list)
    pauses: int = 0
    scale_ups: int = 0
    broker_restarts: int = 0
    worker_starts: int = 0
    unexpected_exits: list[tuple[str, int]] = field(default_factory=list)
    expected_missed: int = 0
    observed_missed: int = 0
    missing: int = 0
    duplicated: int = 0
    false_missed: int = 0
    ambiguous: int = 0
    lateness_ms: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.missing == self.duplicated == self.false_missed == 0 and not self.problems


class Chaos:
    def __init__(self, config: ChaosConfig, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.rng = random.Random(config.seed)
        self.broker = KafkaBroker(workdir / "kafka")
        self.report = Report(config.seed)
        self.rounds = plan_rounds(config.seed, config.rounds, config.rate_per_s, config.tta_range)
        self.settings: Settings | None = None
        self.fleet: Fleet | None = None

    async def run(self) -> Report:
        started = time.monotonic()
        await asyncio.to_thread(self.broker.start)
        try:
            await self._run()
        finally:
            if self.fleet is not None:
                await self.fleet.stop_all()
            await asyncio.to_thread(self.broker.stop)
        self.report.duration_s = round(time.monotonic() - started, 1)
        return self.report

    async def _run(self) -> None:
        config = self.config
        prefix = f"chaos{config.seed}"
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": self.broker.bootstrap_servers,
            **isolated_names(prefix),
        }
        settings = Settings(**values)
        self.settings = settings
        await ensure_topics(settings, config.partitions, 1)
        env = worker_env(settings) | {
            "NOTIFIER_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
            "NOTIFIER_SHUTDOWN_GRACE_SECONDS": "5",
        }
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.fleet = Fleet(env, self.workdir / "logs")
        producer = await self._producer()
        await self._send(
            producer, settings.topic_sites, SITE, traffic.site_updated(SITE, "acct-chaos", "Chaos Tours")
        )
        await self.fleet.start("w0")
        await self.fleet.wait_ready("w0")
        reader = OutputReader(self.broker.bootstrap_servers, [settings.topic_missed, settings.topic_chatbot])
        await reader.start()
        try:
            window_s = self.rounds[-1].start_at_s + max(r.action_after_s for r in self.rounds)
            generator = asyncio.create_task(self._generate(producer))
            supervisor = asyncio.create_task(self.fleet.supervise())
            await self._control(window_s)
            await generator
            await self._settle(reader)
            supervisor.cancel()
            self._check(reader)
        finally:
            await reader.stop()
            await producer.stop()

    # -- generator ----------------------------------------------------------------------------

    async def _producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.broker.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=5_000,
        )
        await producer.start()
        return producer

    async def _send(self, producer: AIOKafkaProducer, topic: str, key: str, value: bytes) -> int:
        """Produce until the broker acknowledges (it may be down); return the ack time (epoch ms)."""
        while True:
            try:
                await producer.send_and_wait(topic, value=value, key=key.encode())
            except KafkaError:
                await asyncio.sleep(0.5)
                continue
            return time.time_ns() // 1_000_000

    async def _generate(self, producer: AIOKafkaProducer) -> None:
        loop = asyncio.get_running_loop()
        begin = loop.time()
        tasks = []
        for planned in self.rounds:
            await asyncio.sleep(max(0.0, begin + planned.start_at_s - loop.time()))
            tasks.append(asyncio.create_task(self._play(producer, planned)))
        await asyncio.gather(*tasks)

    async def _play(self, producer: AIOKafkaProducer, planned: PlannedRound) -> None:
        assert self.settings is not None
        topic = self.settings.topic_chat_events
        planned.request_id = f"req-{planned.chat_id}"
        planned.requested_at_ms = time.time_ns() // 1_000_000
        value = traffic.handoff_requested(
            planned.chat_id,
            SITE,
            planned.requested_at_ms,
            time_to_accept_seconds=planned.tta_s,
            event_id=planned.request_id,
        )
        await self._send(producer, topic, planned.chat_id, value)
        planned.produced = True
        if planned.fate is Fate.EXPIRE:
            return
        at_ms = planned.requested_at_ms + int(planned.action_after_s * 1000)
        await asyncio.sleep(max(0.0, at_ms / 1000 - time.time()))
        event_ms = time.time_ns() // 1_000_000
        if planned.fate is Fate.END:
            action = traffic.chat_ended(planned.chat_id, SITE, event_ms)
        else:
            action = traffic.agent_joined(planned.chat_id, SITE, "agent-chaos", event_ms)
        planned.action_acked_ms = await self._send(producer, topic, planned.chat_id, action)

    # -- controller ---------------------------------------------------------------------------

    async def _control(self, window_s: float) -> None:
        config = self.config
        actions: list[tuple[float, str]] = [
            (self.rng.uniform(0.05, 0.9) * window_s, "kill") for _ in range(config.kills)
        ]
        actions += [(self.rng.uniform(0.05, 0.9) * window_s, "term") for _ in range(config.graceful_restarts)]
        actions += [(self.rng.uniform(0.1, 0.7) * window_s, "pause") for _ in range(config.pauses)]
        actions += [(self.rng.uniform(0.1, 0.8) * window_s, "broker") for _ in range(config.broker_restarts)]
        if config.scale_to > 1:
            actions += [(0.25 * window_s, "scale_up"), (0.6 * window_s, "scale_down")]
        loop = asyncio.get_running_loop()
        begin = loop.time()
        for at_s, action in sorted(actions):
            await asyncio.sleep(max(0.0, begin + at_s - loop.time()))
            await getattr(self, f"_{action}")()

    def _some_worker(self) -> str:
        assert self.fleet is not None
        names = sorted(name for name, worker in self.fleet.workers.items() if not worker.paused)
        return self.rng.choice(names)

    async def _kill(self) -> None:
        assert self.fleet is not None
        name = self._some_worker()
        await self.fleet.kill(name)
        self.report.kills += 1
        await asyncio.sleep(self.rng.uniform(0.2, 2.0))
        await self.fleet.start(name)

    async def _term(self) -> None:
        assert self.fleet is not None
        name = self._some_worker()
        code = await self.fleet.terminate(name)
        self.report.graceful_restarts += 1
        self.report.graceful_exit_codes.append(code)
        await self.fleet.start(name)

    async def _pause(self) -> None:
        """SIGSTOP a worker until the group moved its partitions, then let the zombie go on."""
        assert self.fleet is not None
        name = self._some_worker()
        self.fleet.pause(name)
        self.report.pauses += 1
        await asyncio.sleep(SESSION_TIMEOUT_MS / 1000 + 4)
        self.fleet.resume(name)

    async def _broker(self) -> None:
        await asyncio.to_thread(self.broker.kill)
        self.report.broker_restarts += 1
        await asyncio.sleep(self.rng.uniform(1.0, 4.0))
        await asyncio.to_thread(self.broker.restart)

    async def _scale_up(self) -> None:
        assert self.fleet is not None
        for index in range(1, self.config.scale_to):
            await self.fleet.start(f"extra{index}")
        self.report.scale_ups += 1

    async def _scale_down(self) -> None:
        assert self.fleet is not None
        for name in [name for name in self.fleet.workers if name.startswith("extra")]:
            code = await self.fleet.terminate(name)
            self.report.graceful_exit_codes.append(code)

    # -- checker ------------------------------------------------------------------------------

    async def _settle(self, reader: OutputReader) -> None:
        """Wait for the outputs every round should produce (or give up and report what is missing)."""
        assert self.fleet is not None
        assert self.settings is not None
        for name, worker in list(self.fleet.workers.items()):
            if worker.paused:
                self.fleet.resume(name)
        last_deadline_s = max(r.deadline_ms for r in self.rounds) / 1000
        await asyncio.sleep(max(0.0, last_deadline_s - time.time()))
        expected = {f"{r.request_id}:missed" for r in self.rounds if r.expects_missed}

        def complete() -> bool:
            seen = {o.value.get("id") for o in reader.on(self.settings.topic_missed) if o.value}  # type: ignore[union-attr]
            return expected <= seen

        try:
            await reader.wait_for(complete, 120, "every expected Missed")
        except AssertionError as error:
            self.report.problems.append(str(error))
        # Outputs of the last transactions settle together; a short grace catches late duplicates.
        await asyncio.sleep(3)

    def _check(self, reader: OutputReader) -> None:
        assert self.settings is not None
        report = self.report
        missed: dict[str, list[dict[str, Any]]] = {}
        for output in reader.on(self.settings.topic_missed):
            if output.value:
                missed.setdefault(output.value["id"], []).append(output.value)
        chatbot: dict[str, int] = {}
        for output in reader.on(self.settings.topic_chatbot):
            if output.value:
                chatbot[output.value["id"]] = chatbot.get(output.value["id"], 0) + 1
        report.rounds = len(self.rounds)
        report.worker_starts = self.fleet.started if self.fleet else 0
        report.unexpected_exits = self.fleet.unexpected_exits if self.fleet else []
        report.fates = {fate.value: sum(r.fate is fate for r in self.rounds) for fate in Fate}
        report.observed_missed = sum(len(v) for v in missed.values())
        lateness = []
        for planned in self.rounds:
            key = f"{planned.request_id}:missed"
            count = len(missed.get(key, []))
            bot = chatbot.get(f"{planned.request_id}:chatbot", 0)
            if planned.ambiguous:
                report.ambiguous += 1
                continue
            if planned.expects_missed:
                report.expected_missed += 1
                report.missing += count == 0 or bot == 0
                report.duplicated += count > 1 or bot > 1
                if count:
                    missed_at = missed[key][0]["data"]
                    lateness.append(_ms(missed_at["missed_at"]) - _ms(missed_at["deadline_at"]))
            elif count or bot:
                report.false_missed += 1
        if lateness:
            ordered = sorted(lateness)
            report.lateness_ms = {
                "p50": statistics.median(ordered),
                "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
                "max": ordered[-1],
            }
        if any(code != 0 for code in report.graceful_exit_codes):
            report.problems.append(f"a SIGTERM'd worker exited non-zero: {report.graceful_exit_codes}")


def _ms(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339).timestamp() * 1000


def write_report(report: Report, path: Path) -> None:
    path.write_text(json.dumps(asdict(report) | {"passed": report.passed}, indent=2))
