"""Fan-out reports wait for their partition's next step; rejected tokens die at once."""

from __future__ import annotations

from service.domain.events import TokenRejection
from service.domain.push import Provider
from service.domain.reports import DeviceRejected, FanOutFinished
from service.partition.inbox import FanOutInbox
from tests.unit.factories import agent, device, world


def rejected(partition: int) -> DeviceRejected:
    rejection = TokenRejection("agent-1", "d1", Provider.FCM, "unregistered", "fp")
    return DeviceRejected(partition, rejection, "token-d1")


def test_reports_wait_per_partition_in_arrival_order_and_are_taken_once() -> None:
    inbox = FanOutInbox(world(agent()).agents, owns=lambda partition: True)
    first, second, other = FanOutFinished(4, "c1", "r1", ()), rejected(4), FanOutFinished(5, "c2", "r2", ())
    for report in (first, other, second):
        inbox.receive(report)
    assert inbox.take(4) == [first, second]
    assert inbox.take(4) == []
    assert inbox.take(5) == [other]


def test_a_rejected_token_is_dead_at_once_even_if_the_partition_was_released() -> None:
    """No push decided before the partition's next step (or on another partition) may use it."""
    agents = world(agent(devices=(device("d1"),))).agents
    inbox = FanOutInbox(agents, owns=lambda partition: False)
    assert agents.device("agent-1", "d1") is not None
    inbox.receive(rejected(4))
    assert agents.device("agent-1", "d1") is None
    assert inbox.take(4) == [], "a released partition's reports are dropped"
