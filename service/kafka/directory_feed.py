"""Keeps the agent and site directories in step with their compacted topics.

At start-up the feed reads both topics from the beginning up to their end offsets (the worker
is not ready before that: pushing from a half-loaded directory would skip agents), then keeps
following them. Every worker reads every partition of these topics — they are small, and each
worker needs the whole directory whatever chat partitions it owns. Unusable snapshots are
dead-lettered and counted; a site snapshot with unusable optional fields is applied without them
and reported (`site_snapshot_repaired`); a tombstone deletes the agent or site.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from service.backoff import Backoff
from service.domain.directory import AgentDirectory, SiteDirectory, sites_gaining
from service.gc_policy import collector_paused_then_frozen
from service.kafka.connection import client_options
from service.kafka.polling import RetryPause
from service.observability.metrics import Metrics
from service.partition.records import ConsumedRecord
from service.partition.rejections import RejectionReporter, count_rejected
from service.settings import Settings
from service.wire.inbound import (
    AGENT_UPDATED,
    SITE_UPDATED,
    DecodeLimits,
    decode_agent_with_repairs,
    decode_key,
    decode_site,
)
from service.wire.rejection import Rejection
from service.wire.repair import Repair, described

log = structlog.get_logger(__name__)

DEAD_LETTER_BACKOFF = Backoff(base_s=0.5, cap_s=10.0)
"""Between attempts to write a dead letter: the feed waits for it (skipping the record unwritten
would lose it), so retry soon at first, then no more often than every 10 s."""


class DirectoryFeed:
    """Loads the agent and site directories at start-up, then follows their topics; tells the
    worker which sites' pending rounds may have gained devices."""

    def __init__(
        self,
        settings: Settings,
        agents: AgentDirectory,
        sites: SiteDirectory,
        metrics: Metrics,
        limits: DecodeLimits,
        sites_changed: Callable[[Iterable[str]], None] | None = None,
    ) -> None:
        """`sites_changed` is told, after the initial load, of sites whose pending rounds may
        have gained eligible devices (the worker pushes them while the deadline is ahead)."""
        self._settings = settings
        self._sites_changed = sites_changed
        self._agents = agents
        self._sites = sites
        self._metrics = metrics
        self._limits = limits
        self._rejections = RejectionReporter(
            settings.topic_dead_letter, "snapshot_rejected", settings.dead_letter_redact_personal_data
        )
        self._loaded = asyncio.Event()
        self._stopping = asyncio.Event()
        # Labelled once: `labels()` per record cost ~1 µs, a second per million agents at start-up.
        self._agents_consumed = metrics.events_consumed.labels(AGENT_UPDATED)
        self._sites_consumed = metrics.events_consumed.labels(SITE_UPDATED)

    @property
    def loaded(self) -> bool:
        return self._loaded.is_set()

    async def wait_loaded(self) -> None:
        await self._loaded.wait()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        settings = self._settings
        consumer = AIOKafkaConsumer(
            settings.topic_agents,
            settings.topic_sites,
            **client_options(settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            # At start-up the whole directory is read (a million agents: ~730 MB); with the default
            # 1 MiB per partition and fetch that took twice the fetch time (8 MiB, as restore uses).
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        producer = AIOKafkaProducer(**client_options(settings), enable_idempotence=True, acks="all")
        await consumer.start()
        await producer.start()
        try:
            await self._load(consumer, producer)
            poll_failures = RetryPause()
            while not self._stopping.is_set():
                try:
                    batches = await consumer.getmany(timeout_ms=500, max_records=5_000)
                except KafkaError as error:
                    delay = poll_failures.failed()
                    log.warning("directory_poll_failed", error=repr(error), retry_in_s=delay)
                    await asyncio.sleep(delay)
                    continue
                poll_failures.succeeded()
                await self._apply_all(producer, batches)
        finally:
            await consumer.stop()
            await producer.stop()

    async def _load(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        # A million agents are long-lived objects: the collector's ever-larger passes over them
        # would slow the load, as they did the restore (service/gc_policy.py).
        with collector_paused_then_frozen():
            await self._load_to_end(consumer, producer)
        self._loaded.set()
        log.info("directories_loaded", agents=len(self._agents), sites=len(self._sites))

    async def _load_to_end(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        partitions: set[TopicPartition] = set()
        while not partitions and not self._stopping.is_set():
            # Without a group, the consumer assigns every partition once metadata arrived.
            await self._apply_all(producer, await consumer.getmany(timeout_ms=100))
            partitions = set(consumer.assignment())
        ends = await consumer.end_offsets(list(partitions))
        while not self._stopping.is_set():
            behind = [tp for tp in partitions if await consumer.position(tp) < ends[tp]]
            if not behind:
                break
            await self._apply_all(
                producer, await consumer.getmany(*behind, timeout_ms=500, max_records=10_000)
            )

    async def _apply_all(
        self, producer: AIOKafkaProducer, batches: dict[TopicPartition, list[ConsumedRecord]]
    ) -> None:
        for tp, records in batches.items():
            for record in records:
                rejection = self._apply(tp.topic, record)
                if rejection is not None:
                    await self._dead_letter(producer, record, rejection)

    def _apply(self, topic: str, record: ConsumedRecord) -> Rejection | None:
        is_agents = topic == self._settings.topic_agents
        if record.value is None:
            key = decode_key(record.key)
            if key is not None:
                (self._agents.remove if is_agents else self._sites.remove)(key)
            return None
        if is_agents:
            decoded_agent = decode_agent_with_repairs(record.key, record.value, self._limits)
            if isinstance(decoded_agent, Rejection):
                return decoded_agent
            agent, agent_repairs = decoded_agent
            self._report_repairs(
                AGENT_UPDATED, "agent_snapshot_repaired", record, agent_repairs, agent_id=agent.agent_id
            )
            self._agents.upsert(agent)
            self._agents_consumed.inc()
            if self.loaded:  # (nobody to tell while loading: no round runs yet)
                self._notify(sites_gaining(agent))
            return None
        decoded = decode_site(record.key, record.value, self._limits)
        if isinstance(decoded, Rejection):
            return decoded
        site, repairs = decoded
        self._report_repairs(SITE_UPDATED, "site_snapshot_repaired", record, repairs, site_id=site.site_id)
        self._sites.upsert(site)
        self._sites_consumed.inc()
        self._notify((site.site_id,))
        return None

    def _report_repairs(
        self,
        event_type: str,
        log_event: str,
        record: ConsumedRecord,
        repairs: tuple[Repair, ...],
        **snapshot_id: str,
    ) -> None:
        """A snapshot applied all the same, with its unusable optional fields dropped, clamped or
        truncated: counted and logged."""
        if not repairs:
            return
        for repair in repairs:
            self._metrics.fields_repaired.labels(event_type, repair.field, repair.action).inc()
        log.warning(
            log_event,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            repaired=described(repairs),
            **snapshot_id,
        )

    def _notify(self, site_ids: tuple[str, ...]) -> None:
        if site_ids and self._sites_changed is not None and self.loaded:
            self._sites_changed(site_ids)

    async def _dead_letter(
        self, producer: AIOKafkaProducer, record: ConsumedRecord, rejection: Rejection
    ) -> None:
        count_rejected(self._metrics, record.topic, rejection.reason)
        dead = self._rejections.reject(
            record, rejection, agent_id=rejection.agent_id, site_id=rejection.site_id
        )
        attempt = 0
        while True:  # the record is only skipped once its dead letter is safely written
            try:
                await producer.send_and_wait(
                    dead.topic, key=dead.key, value=dead.value, headers=list(dead.headers)
                )
            except KafkaError as error:
                attempt += 1
                delay = DEAD_LETTER_BACKOFF.delay(attempt)
                log.warning("dead_letter_failed", error=repr(error), retry_in_s=delay)
                await asyncio.sleep(delay)
                continue
            return
