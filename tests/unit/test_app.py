"""The composition root's periodic jobs run on the event loop, never in APScheduler's thread pool."""

from __future__ import annotations

import asyncio
import gc
import threading
from datetime import UTC, datetime

import pytest

from service.app import Application
from service.clock import SystemClock
from service.settings import Settings


async def test_periodic_jobs_run_on_the_event_loop_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    ran_on: dict[str, threading.Thread] = {}
    both_ran = asyncio.Event()

    loop = asyncio.get_running_loop()

    def record(job: str) -> bool:
        ran_on[job] = threading.current_thread()
        if len(ran_on) == 2:
            loop.call_soon_threadsafe(both_ran.set)
        return False

    app = Application(Settings(), [], SystemClock())
    monkeypatch.setattr(app, "ready", lambda: record("status"))  # the status report asks first
    monkeypatch.setattr(gc, "freeze", lambda: record("gc_freeze"))
    scheduler = app.periodic_jobs()
    assert len(scheduler.get_jobs()) == 2
    scheduler.start()
    try:
        for job in scheduler.get_jobs():
            job.modify(next_run_time=datetime.now(UTC))  # due now rather than in 15 s / 30 s
        await asyncio.wait_for(both_ran.wait(), timeout=10)
    finally:
        scheduler.shutdown(wait=False)
    assert ran_on == {"status": threading.main_thread(), "gc_freeze": threading.main_thread()}
