"""A whole worker under test: real broker topics, provider fakes, the Application, and helpers to
publish snapshots and chat events and to read what the worker wrote."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from devtools import traffic
from devtools.credentials import GeneratedCredentials
from devtools.fakes.apns import ApnsFake, ReceivedNotification
from devtools.fakes.fcm import FcmFake, ReceivedMessage
from devtools.kafka_io import Output, OutputReader, Publisher
from service.app import Application
from service.clock import SystemClock
from service.push.senders import build_senders
from service.settings import Settings
from tests.integration.kafka_helpers import eventually, fresh_settings

APNS_TOPIC = "com.example.livechat"


@dataclass
class Fakes:
    credentials: GeneratedCredentials
    fcm: FcmFake
    apns: ApnsFake
    apns_sandbox: ApnsFake

    def settings(self) -> dict[str, Any]:
        return {
            "fcm_credentials_file": self.credentials.fcm_service_account,
            "fcm_endpoint": self.fcm.url,
            "apns_key_file": self.credentials.apns_key,
            "apns_key_id": self.credentials.apns_key_id,
            "apns_team_id": self.credentials.apns_team_id,
            "apns_topic": APNS_TOPIC,
            "apns_endpoint": self.apns.url,
            "apns_sandbox_endpoint": self.apns_sandbox.url,
            "apns_ca_file": self.credentials.ca_cert,
            "push_timeout_seconds": 5.0,
        }


@dataclass
class Stack:
    bootstrap: str
    fakes: Fakes
    settings: Settings
    publisher: Publisher
    outputs: OutputReader
    app: Application | None = None
    _task: asyncio.Task[int] | None = None
    exit_codes: list[int] = field(default_factory=list)

    @classmethod
    async def create(cls, bootstrap: str, fakes: Fakes, partitions: int = 1, **overrides: Any) -> Stack:
        settings = await fresh_settings(bootstrap, partitions, **(fakes.settings() | overrides))
        publisher = Publisher(bootstrap)
        await publisher.start()
        outputs = OutputReader(
            bootstrap,
            [
                settings.topic_missed,
                settings.topic_chatbot,
                settings.topic_push_feedback,
                settings.topic_dead_letter,
            ],
        )
        await outputs.start()
        return cls(bootstrap, fakes, settings, publisher, outputs)

    # -- the worker ---------------------------------------------------------------------------

    async def start_worker(self, timeout: float = 60.0) -> Application:
        clock = SystemClock()
        senders = await build_senders(self.settings, clock)
        app = Application(self.settings, senders, clock)
        self.app = app
        self._task = asyncio.create_task(app.run(handle_signals=False))
        await eventually(
            lambda: app.ready() or self._task is None or self._task.done(), timeout, "worker ready"
        )
        if self._task.done():
            raise AssertionError(f"worker exited during start-up: {self._task.result()}")
        return app

    async def stop_worker(self) -> int:
        assert self.app is not None
        assert self._task is not None
        self.app.request_stop()
        code = await asyncio.wait_for(self._task, 30)
        self.exit_codes.append(code)
        self.app = None
        self._task = None
        return code

    async def close(self) -> None:
        if self.app is not None:
            await self.stop_worker()
        await self.outputs.stop()
        await self.publisher.stop()

    # -- inputs -------------------------------------------------------------------------------

    async def site(self, site_id: str = "site-1", account_id: str = "acct-1", **kw: Any) -> None:
        value = traffic.site_updated(site_id, account_id, kw.pop("name", "Alpine Tours"), **kw)
        await self.publisher.send(self.settings.topic_sites, site_id, value)

    async def agent(self, agent_id: str, account_id: str = "acct-1", **kw: Any) -> None:
        await self.publisher.send(
            self.settings.topic_agents, agent_id, traffic.agent_updated(agent_id, account_id, **kw)
        )

    async def delete(self, topic: str, key: str) -> None:
        await self.publisher.send(topic, key, None)

    async def request(
        self,
        chat_id: str,
        site_id: str = "site-1",
        *,
        tta: int | None = None,
        at_ms: int | None = None,
        event_id: str | None = None,
        visitor: dict[str, str] | None = None,
    ) -> str:
        """Publish `handoff_requested`; returns its CloudEvents id."""
        event_id = event_id or str(uuid.uuid4())
        value = traffic.handoff_requested(
            chat_id,
            site_id,
            at_ms if at_ms is not None else now_ms(),
            visitor=visitor,
            time_to_accept_seconds=tta,
            event_id=event_id,
        )
        await self.publisher.send(self.settings.topic_chat_events, chat_id, value)
        return event_id

    async def join(
        self, chat_id: str, agent_id: str = "agent-1", site_id: str = "site-1", *, at_ms: int | None = None
    ) -> None:
        """Publish `agent_joined`, stamped `at_ms` (default: now) as the chat backend's clock says."""
        value = traffic.agent_joined(chat_id, site_id, agent_id, now_ms() if at_ms is None else at_ms)
        await self.publisher.send(self.settings.topic_chat_events, chat_id, value)

    async def end(self, chat_id: str, site_id: str = "site-1", *, at_ms: int | None = None) -> None:
        value = traffic.chat_ended(chat_id, site_id, now_ms() if at_ms is None else at_ms)
        await self.publisher.send(self.settings.topic_chat_events, chat_id, value)

    async def raw(self, key: str, value: bytes | None) -> None:
        await self.publisher.send(self.settings.topic_chat_events, key, value)

    # -- outputs ------------------------------------------------------------------------------

    def missed(self, chat_id: str | None = None) -> list[Output]:
        return self.outputs.on(self.settings.topic_missed, chat_id)

    def chatbot(self, chat_id: str | None = None) -> list[Output]:
        return self.outputs.on(self.settings.topic_chatbot, chat_id)

    def feedback(self) -> list[Output]:
        return self.outputs.on(self.settings.topic_push_feedback)

    def dead_letters(self) -> list[Output]:
        return self.outputs.on(self.settings.topic_dead_letter)

    async def wait_missed(self, chat_id: str, timeout: float = 30.0) -> Output:
        await self.outputs.wait_for(
            lambda: bool(self.missed(chat_id)) and bool(self.chatbot(chat_id)),
            timeout,
            f"Missed of {chat_id}",
        )
        return self.missed(chat_id)[0]

    async def settle(self, tta: int = 1) -> None:
        """Wait until everything the worker would do for earlier input is done.

        A sentinel round on the same (single) partition with a later deadline is missed only after
        every earlier deadline was handled in deadline order, so once its Missed is visible, any
        (wrong) Missed of an earlier round would be visible too.
        """
        sentinel = f"sentinel-{uuid.uuid4().hex[:8]}"
        await self.request(sentinel, tta=tta)
        await self.wait_missed(sentinel, timeout=30 + tta)

    # -- provider fakes -----------------------------------------------------------------------

    def fcm_to(self, token: str, kind: str | None = None) -> list[ReceivedMessage]:
        messages = self.fakes.fcm.messages.items
        return [m for m in messages if m.token == token and (kind is None or _fcm_kind(m) == kind)]

    def apns_to(self, fake: ApnsFake, token: str, kind: str | None = None) -> list[ReceivedNotification]:
        notifications = fake.notifications.items
        return [
            n for n in notifications if n.token == token and (kind is None or n.payload.get("type") == kind)
        ]


def _fcm_kind(message: ReceivedMessage) -> str | None:
    data = message.message.get("data") or {}
    return data.get("type") if isinstance(data, dict) else None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def tokens(messages: Sequence[ReceivedMessage | ReceivedNotification]) -> list[str]:
    return sorted(str(m.token) for m in messages)
