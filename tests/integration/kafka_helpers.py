"""Helpers for tests on the real broker: unique topics per test, waiting on conditions."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
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


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m service ARGS` configured only by the NOTIFIER_* variables of `settings`' Kafka
    address and topics, as an operator would run it; the caller's NOTIFIER_* are dropped."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("NOTIFIER_")}
    environment |= {
        "NOTIFIER_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "NOTIFIER_TOPIC_CHAT_EVENTS": settings.topic_chat_events,
        "NOTIFIER_TOPIC_CHANGELOG": settings.topic_changelog,
        "NOTIFIER_TOPIC_AGENTS": settings.topic_agents,
        "NOTIFIER_TOPIC_SITES": settings.topic_sites,
        "NOTIFIER_TOPIC_MISSED": settings.topic_missed,
        "NOTIFIER_TOPIC_CHATBOT": settings.topic_chatbot,
        "NOTIFIER_TOPIC_PUSH_FEEDBACK": settings.topic_push_feedback,
        "NOTIFIER_TOPIC_DEAD_LETTER": settings.topic_dead_letter,
        "NOTIFIER_TOPIC_COMMANDS": settings.topic_commands,
    }
    command = [sys.executable, "-m", "service", *args]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=60, check=False)
