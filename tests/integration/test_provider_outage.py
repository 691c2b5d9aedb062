"""Issue #4 end to end: push providers in trouble never hold up event processing or deadlines.

The worker runs on the real broker while FCM hangs every send and APNs is down for the whole test
(production drops every connection, sandbox answers 503), with one push slot per provider so pushes
queue until their deadlines expire them. Every Missed and chatbot message must still arrive within a
second of its deadline, joins and ends must still close their rounds, and `/readyz` must stay 200.
A second test takes the FCM token endpoint away: `/readyz` and the auth metrics say so, and recover
when it comes back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, Self

import aiohttp
import pytest

from devtools import traffic
from devtools.fakes.apns import ApnsFault
from devtools.fakes.fcm import FcmFault, TokenFault
from service.app import Application
from service.domain.push import Provider
from service.push.base import PushSender
from tests.integration.kafka_helpers import eventually
from tests.integration.stack import Stack, now_ms

pytestmark = [pytest.mark.kafka]

MakeStack = Callable[..., Awaitable[Stack]]
ON_TIME_MS = 1_000


def epoch_ms(rfc3339: str) -> int:
    return int(dt.datetime.fromisoformat(rfc3339).timestamp() * 1000)


class ReadinessWatch:
    """Asks `/readyz` every 50 ms in the background and keeps every answer."""

    def __init__(self, port: int) -> None:
        self._url = f"http://127.0.0.1:{port}/readyz"
        self.answers: list[tuple[int, dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        async with aiohttp.ClientSession() as http:
            while True:
                async with http.get(self._url) as response:
                    self.answers.append((response.status, await response.json()))
                await asyncio.sleep(0.05)  # the sampling rate of a monitor, not a synchronisation


def fcm_sender(app: Application) -> PushSender:
    return next(sender for sender in app.senders if sender.provider is Provider.FCM)


async def metric(app: Application, name: str, **labels: str) -> float:
    value = app.metrics.registry.get_sample_value(name, labels)
    assert value is not None, f"{name}{labels} is not exported"
    return value


async def test_missed_and_chatbot_messages_stay_on_time_while_fcm_hangs_and_apns_is_down(
    make_stack: MakeStack,
) -> None:
    stack = await make_stack(push_max_in_flight=1)
    fakes = stack.fakes
    fakes.fcm.set_outage(FcmFault(hang=True))
    fakes.apns.set_outage(ApnsFault(drop_connection=True))
    fakes.apns_sandbox.set_outage(ApnsFault(503, "ServiceUnavailable"))
    await stack.site("site-1", "acct-1", time_to_accept_seconds=60, email="desk@alpine.example")
    android = [traffic.device(f"android-{i}", "fcm", f"fcm-token-{i}") for i in range(3)]
    iphones = [
        traffic.device("iphone", "apns", "a1" * 32),
        traffic.device("iphone-dev", "apns", "b2" * 32, apns_environment="sandbox"),
    ]
    await stack.agent("agent-1", sites={"site-1": True}, devices=[*android, *iphones])
    await stack.agent("agent-2", sites={"site-1": True}, devices=[*android[:2], iphones[0]])
    app = await stack.start_worker()
    assert app.http_port is not None

    missed = {"m1": 2, "m2": 2, "m3": 3, "m4": 3, "m5": 4, "m6": 4}
    seen_at: dict[str, int] = {}

    async def watch(chat_id: str) -> None:
        await stack.wait_missed(chat_id, timeout=20)
        seen_at[chat_id] = now_ms()

    async with ReadinessWatch(app.http_port) as readiness:
        watchers = []
        for chat_id, tta in missed.items():
            await stack.request(chat_id, tta=tta)
            watchers.append(asyncio.create_task(watch(chat_id)))
            if chat_id == "m2":
                await stack.request("joined", tta=3)
                await stack.request("ended", tta=3)
        await fakes.fcm.arrivals.wait_for(lambda items: len(items) >= 1, 10)  # FCM is really asked
        await stack.join("joined", "agent-2")
        await stack.end("ended")
        await asyncio.gather(*watchers)

    for chat_id, tta in missed.items():
        [event] = stack.missed(chat_id)
        [chatbot] = stack.chatbot(chat_id)
        assert event.value is not None
        assert chatbot.value is not None
        data = event.value["data"]
        deadline = epoch_ms(data["deadline_at"])
        assert deadline == epoch_ms(data["requested_at"]) + tta * 1000
        assert epoch_ms(data["missed_at"]) - deadline <= ON_TIME_MS, f"{chat_id}: Missed decided late"
        assert epoch_ms(chatbot.value["time"]) - deadline <= ON_TIME_MS, f"{chat_id}: chatbot decided late"
        assert seen_at[chat_id] - deadline <= ON_TIME_MS, (
            f"{chat_id}: arrived {seen_at[chat_id] - deadline} ms late"
        )
    # Deadlines fire in order on the one partition: m5 and m6 (4 s) were missed after the 3 s
    # deadlines of the joined and ended chats, so a wrong Missed of those would be visible now.
    assert stack.missed("joined") == stack.missed("ended") == []
    assert await metric(app, "notifier_rounds_closed_total", outcome="accepted") == 1
    assert await metric(app, "notifier_rounds_closed_total", outcome="ended") == 1

    assert readiness.answers, "readiness was never asked"
    assert {status for status, _ in readiness.answers} == {200}, "the worker stopped being ready"
    assert all(body["checks"]["push_credentials"] for _, body in readiness.answers)
    assert fakes.fcm.messages.items == []
    assert fakes.apns.notifications.items == fakes.apns_sandbox.notifications.items == []
    assert await metric(app, "notifier_pushes_skipped_total", provider="fcm", why="expired") > 0
    assert await metric(app, "notifier_pushes_skipped_total", provider="apns", why="expired") > 0


async def test_fcm_token_failures_turn_readyz_false_and_it_recovers(make_stack: MakeStack) -> None:
    stack = await make_stack()
    stack.fakes.fcm.set_token_outage(TokenFault(drop_connection=True))
    app = await stack.start_worker()
    assert app.http_port is not None
    url = f"http://127.0.0.1:{app.http_port}"

    async with aiohttp.ClientSession() as http:

        async def readyz() -> tuple[int, dict[str, Any]]:
            async with http.get(f"{url}/readyz") as response:
                return response.status, await response.json()

        await eventually(lambda: not fcm_sender(app).auth.ok, 20, "FCM credentials reported failing")
        status, body = await readyz()
        assert status == 503
        assert body["checks"] == {
            "directories_loaded": True,
            "partitions_restored": True,
            "push_credentials": False,
        }
        async with http.get(f"{url}/metrics") as response:
            exposition = await response.text()
        failures = await metric(app, "notifier_provider_auth_failures_total", provider="fcm")
        assert failures >= 3
        assert f'notifier_provider_auth_failures_total{{provider="fcm"}} {failures}' in exposition
        assert await metric(app, "notifier_provider_auth_consecutive_failures", provider="fcm") >= 3
        assert await metric(app, "notifier_provider_auth_failures_total", provider="apns") == 0

        stack.fakes.fcm.set_token_outage(None)
        await stack.fakes.fcm.token_requests.wait_for(lambda issued: len(issued) == 1, 20)
        await eventually(lambda: fcm_sender(app).auth.ok, 5, "FCM credentials healthy again")
        assert (await readyz())[0] == 200
        assert await metric(app, "notifier_provider_auth_consecutive_failures", provider="fcm") == 0
