"""The commands consumer's group settings (service/kafka/commands.py)."""

from __future__ import annotations

from service.kafka.commands import commands_group, rebalance_timeout_ms
from service.push.test_push import TEST_RETRY
from service.settings import Settings


def test_the_commands_have_a_group_of_their_own() -> None:
    """Not the chat-events group: its members own chat partitions, not command partitions."""
    assert commands_group(Settings(group_id="notifier-eu")) == "notifier-eu-commands"


def test_a_rebalance_waits_longer_than_a_batch_can_take() -> None:
    settings = Settings(push_timeout_seconds=10.0)
    slowest_batch_s = TEST_RETRY.max_attempts * 10.0 + (TEST_RETRY.max_attempts - 1) * TEST_RETRY.cap_s
    assert rebalance_timeout_ms(settings) > slowest_batch_s * 1000
    quick = Settings(push_timeout_seconds=0.1, kafka_session_timeout_ms=30_000)
    assert rebalance_timeout_ms(quick) == 30_000  # never shorter than the session timeout
