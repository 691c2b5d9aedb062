"""The composition root: builds settings-driven parts, wires them, supervises, shuts down.

Nothing else in the package creates clients. Start-up order matters: topics are checked first
(refuse to run on a wrong layout), the HTTP server comes up early so probes answer while the
directories load, and the chat-events consumer joins the group only once the directories are
loaded (a push decided from a half-loaded directory would skip agents).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import structlog
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from service.clock import Clock, SystemClock
from service.config_builders import decode_limits, policy
from service.domain.decide import World
from service.domain.directory import AgentDirectory, SiteDirectory
from service.domain.reports import FanOutReport
from service.gc_policy import FREEZE_INTERVAL_S, freeze_job
from service.http.server import Probe, build_app, start_http
from service.kafka.commands import TestPushCommands
from service.kafka.connection import check_connection, wait_for_group_coordinator
from service.kafka.directory_feed import DirectoryFeed
from service.kafka.topics import verify_topics
from service.kafka.worker import ChatWorker
from service.observability.metrics import Metrics
from service.partition.step import PartitionStep
from service.push.base import PushSender
from service.push.fanout import FanOut
from service.push.one_off import OneOffSender
from service.push.senders import build_senders
from service.push.test_push import TEST_RETRY, TestPusher
from service.settings import Settings

log = structlog.get_logger(__name__)

STATUS_INTERVAL_S = 15


class Application:
    """One running worker process."""

    def __init__(self, settings: Settings, senders: list[PushSender], clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = Metrics(
            [settings.topic_chat_events, settings.topic_agents, settings.topic_sites, settings.topic_commands]
        )
        self.world = World(SiteDirectory(), AgentDirectory(), policy(settings))
        self.senders = senders
        self.metrics.watch_provider_auth(senders)
        limits = decode_limits(settings)
        by_provider = {sender.provider: sender for sender in senders}

        def fan_out(report: Callable[[FanOutReport], None]) -> FanOut:
            return FanOut(
                by_provider,
                self.metrics,
                clock,
                report,
                max_in_flight=settings.push_max_in_flight,
                max_queue_bytes=settings.push_queue_max_bytes,
            )

        step = PartitionStep(settings, self.world, limits)
        self.worker = ChatWorker(settings, self.world, self.metrics, clock, fan_out, step)
        self.feed = DirectoryFeed(
            settings, self.world.agents, self.world.sites, self.metrics, limits, self.worker.sites_changed
        )
        pusher = TestPusher(OneOffSender(senders, self.metrics, clock, retry=TEST_RETRY), self.metrics, clock)
        self.commands = TestPushCommands(settings, self.world.agents, pusher, self.metrics, clock, limits)
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self.http_port: int | None = None

    def ready(self) -> bool:
        return self.feed.loaded and self.worker.ready

    def alive(self) -> bool:
        return all(not task.done() for task in self._tasks)

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, *, handle_signals: bool = True) -> int:
        """Run until SIGTERM/SIGINT (or `request_stop`) or a task dies; return the exit code."""
        settings = self.settings
        await verify_topics(settings)
        await wait_for_group_coordinator(settings)  # a new cluster's offsets topic, without aiokafka's errors
        app = build_app(
            self.metrics.registry,
            liveness=[Probe("tasks_running", self.alive)],
            readiness=[
                Probe("directories_loaded", lambda: self.feed.loaded),
                Probe("partitions_restored", lambda: self.worker.ready),
                Probe("push_credentials", lambda: all(sender.auth.ok for sender in self.senders)),
            ],
        )
        runner, self.http_port = await start_http(app, settings.http_host, settings.http_port)
        scheduler = self.periodic_jobs()
        scheduler.start()
        log.info("worker_starting", settings=settings.redacted(), http_port=self.http_port)
        feed_task = asyncio.create_task(self.feed.run(), name="directory-feed")
        self._tasks.append(feed_task)
        if handle_signals:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.request_stop)
            loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
        exit_code = 0
        try:
            loaded = asyncio.create_task(self.feed.wait_loaded())
            stopped = asyncio.create_task(self._stop.wait())
            await asyncio.wait({loaded, feed_task, stopped}, return_when="FIRST_COMPLETED")
            loaded.cancel()
            stopped.cancel()
            if self.feed.loaded and not self._stop.is_set():
                self._tasks.append(asyncio.create_task(self.worker.run(), name="chat-worker"))
                # Also after the directories loaded: an agent not loaded yet would be answered "unknown".
                self._tasks.append(asyncio.create_task(self.commands.run(), name="test-push-commands"))
            exit_code = await self._supervise()
        finally:
            await self._shut_down(runner, scheduler)
        return exit_code

    def periodic_jobs(self) -> AsyncIOScheduler:
        """The periodic work, not started. Every job is a coroutine function: AsyncIOScheduler runs those
        on the event loop, while a plain function would run in its thread pool and read the loop's
        dicts (partitions, directories, fan-outs) from another thread."""
        scheduler = AsyncIOScheduler()
        scheduler.add_job(self._report_status, "interval", seconds=STATUS_INTERVAL_S, misfire_grace_time=None)
        scheduler.add_job(freeze_job, "interval", seconds=FREEZE_INTERVAL_S, misfire_grace_time=None)
        return scheduler

    async def _supervise(self) -> int:
        stop = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait({stop, *self._tasks}, return_when="FIRST_COMPLETED")
        stop.cancel()
        for task in done:
            if task is not stop and task.exception() is not None:
                log.error("task_failed", task=task.get_name(), error=repr(task.exception()))
                return 1
        return 0

    async def _shut_down(self, runner: web.AppRunner, scheduler: AsyncIOScheduler) -> None:
        log.info("worker_stopping")
        self.worker.stop()
        self.feed.stop()
        self.commands.stop()
        grace = self.settings.shutdown_grace_seconds
        pending = [task for task in self._tasks if not task.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for sender in self.senders:
            with suppress(Exception):
                await sender.close()
        scheduler.shutdown(wait=False)
        await runner.cleanup()
        log.info("worker_stopped")

    async def _report_status(self) -> None:
        self.metrics.ready.set(1 if self.ready() else 0)
        log.info(
            "worker_status",
            ready=self.ready(),
            partitions=self.worker.owned_partitions,
            pushes_in_flight=self.worker.fan_out.in_flight,
            agents=len(self.world.agents),
            sites=len(self.world.sites),
        )


def _dump_tasks() -> None:
    """SIGUSR1: log where every asyncio task is waiting (for a worker that looks stuck)."""
    for task in asyncio.all_tasks():
        where: list[str] = []
        awaited: Any = task.get_coro()
        while awaited is not None and len(where) < 30:  # follow the await chain to where it waits
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is not None:
                where.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        log.warning("task_dump", task=task.get_name(), stack=where)


async def run_worker(settings: Settings, clock: Clock | None = None) -> int:
    clock = clock or SystemClock()
    await check_connection(settings)  # a wrong password or untrusted CA stops start-up here, in one line
    senders = await build_senders(settings, clock)
    return await Application(settings, senders, clock).run()
