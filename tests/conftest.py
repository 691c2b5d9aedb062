"""Fixtures shared by every test directory: one real Kafka broker per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.kafka_broker import KafkaBroker


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A broker the tests share (tests that kill a broker start their own)."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
