"""Fixtures for durability tests: worker *processes* on the real broker, killed with real signals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools import traffic
from devtools.chaos.fleet import Fleet, worker_env
from devtools.credentials import generate_credentials
from devtools.fakes.fcm import FcmFake
from devtools.kafka_io import OutputReader, Publisher
from service.settings import Settings
from tests.integration.kafka_helpers import fresh_settings

SESSION_TIMEOUT_MS = 6_000


@dataclass
class Rig:
    """Topics of their own, a fleet of worker processes, a publisher, an output reader, an FCM fake."""

    settings: Settings
    fleet: Fleet
    publisher: Publisher
    outputs: OutputReader
    fcm: FcmFake

    async def request(self, chat_id: str, tta: int, at_ms: int, event_id: str | None = None) -> str:
        event_id = event_id or f"req-{chat_id}"
        value = traffic.handoff_requested(
            chat_id, "site-1", at_ms, time_to_accept_seconds=tta, event_id=event_id
        )
        await self.publisher.send(self.settings.topic_chat_events, chat_id, value)
        return event_id

    async def join(self, chat_id: str, at_ms: int) -> None:
        value = traffic.agent_joined(chat_id, "site-1", "agent-1", at_ms)
        await self.publisher.send(self.settings.topic_chat_events, chat_id, value)

    def missed(self, chat_id: str) -> int:
        return len(self.outputs.on(self.settings.topic_missed, chat_id))

    def chatbot(self, chat_id: str) -> int:
        return len(self.outputs.on(self.settings.topic_chatbot, chat_id))


async def make_rig(
    bootstrap: str, tmp_path: Path, partitions: int = 1, **overrides: Any
) -> tuple[Rig, FcmFake]:
    fcm = FcmFake(project_id="durability")
    await fcm.start()
    credentials = generate_credentials(
        tmp_path / "credentials", fcm_token_uri=fcm.token_uri, fcm_project_id="durability"
    )
    fcm.trust_service_account(credentials.fcm_service_account)
    settings = await fresh_settings(
        bootstrap,
        partitions,
        fcm_credentials_file=credentials.fcm_service_account,
        fcm_endpoint=fcm.url,
        kafka_session_timeout_ms=SESSION_TIMEOUT_MS,
        shutdown_grace_seconds=5.0,
        **overrides,
    )
    (tmp_path / "logs").mkdir()
    fleet = Fleet(worker_env(settings), tmp_path / "logs")
    publisher = Publisher(bootstrap)
    await publisher.start()
    await publisher.send(
        settings.topic_sites, "site-1", traffic.site_updated("site-1", "acct-1", "Alpine Tours")
    )
    android = traffic.device("android", "fcm", "fcm-token-1")
    agent = traffic.agent_updated("agent-1", "acct-1", sites={"site-1": True}, devices=[android])
    await publisher.send(settings.topic_agents, "agent-1", agent)
    outputs = OutputReader(bootstrap, [settings.topic_missed, settings.topic_chatbot])
    await outputs.start()
    return Rig(settings, fleet, publisher, outputs, fcm), fcm


@pytest.fixture
async def rig(kafka: Any, tmp_path: Path) -> AsyncIterator[Rig]:
    made, fcm = await make_rig(kafka.bootstrap_servers, tmp_path)
    try:
        yield made
    finally:
        await made.fleet.stop_all()
        await made.outputs.stop()
        await made.publisher.stop()
        await fcm.stop()
