"""Helpers for tests on the real broker: unique topics per test, waiting on conditions."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

from devtools.kafka_io import isolated_settings
from service.settings import Settings

_counter = itertools.count()


async def fresh_settings(bootstrap: str, partitions: int = 2, **overrides: Any) -> Settings:
    """Settings with topics and a group of their own, the topics already created."""
    prefix = f"t{next(_counter)}-{int(time.time() * 1000) % 10**8}"
    return await isolated_settings(
        bootstrap, prefix, partitions, **{"kafka_session_timeout_ms": 6_000} | overrides
    )


async def eventually(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll a condition that no event signals (e.g. readiness) until it holds or time runs out."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(0.02)
