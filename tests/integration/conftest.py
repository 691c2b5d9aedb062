"""Fixtures for tests on the real broker: one Kafka per session, fresh fakes and topics per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from devtools.credentials import generate_credentials
from devtools.fakes.apns import ApnsFake
from devtools.fakes.fcm import FcmFake
from devtools.kafka_broker import KafkaBroker
from tests.integration.stack import APNS_TOPIC, Fakes, Stack

MakeStack = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def fakes(tmp_path: Path) -> AsyncIterator[Fakes]:
    fcm = FcmFake(project_id="livechat-test")
    await fcm.start()
    credentials = generate_credentials(
        tmp_path / "credentials", fcm_token_uri=fcm.token_uri, fcm_project_id="livechat-test"
    )
    fcm.trust_service_account(credentials.fcm_service_account)
    apns = ApnsFake(credentials, name="production", topic=APNS_TOPIC)
    sandbox = ApnsFake(credentials, name="sandbox", topic=APNS_TOPIC)
    await apns.start()
    await sandbox.start()
    try:
        yield Fakes(credentials, fcm, apns, sandbox)
    finally:
        await apns.stop()
        await sandbox.stop()
        await fcm.stop()


@pytest.fixture
async def make_stack(kafka: KafkaBroker, fakes: Fakes) -> AsyncIterator[MakeStack]:
    stacks: list[Stack] = []

    async def make(partitions: int = 1, **overrides: Any) -> Stack:
        stack = await Stack.create(kafka.bootstrap_servers, fakes, partitions, **overrides)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        await stack.close()


@pytest.fixture
async def stack(make_stack: MakeStack) -> Stack:
    """One partition: deadlines fire in deadline order, which `Stack.settle` relies on."""
    return await make_stack()
