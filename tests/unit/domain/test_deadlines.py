"""The backlog gate: a due timer waits until the partition was read up to the deadline."""

from __future__ import annotations

from service.domain.deadlines import PartitionProgress, fire_horizon_ms, may_fire


def test_caught_up_partition_fires_everything_due() -> None:
    progress = PartitionProgress(caught_up=True, read_up_to_ms=0)
    assert may_fire(100, 100, progress)
    assert not may_fire(101, 100, progress)
    assert fire_horizon_ms(100, progress) == 100


def test_lagging_partition_fires_only_up_to_what_it_has_read() -> None:
    progress = PartitionProgress(caught_up=False, read_up_to_ms=50)
    assert may_fire(50, 100, progress)
    assert not may_fire(60, 100, progress), "an unread join before the deadline could still cancel it"
    assert fire_horizon_ms(100, progress) == 50


def test_nothing_read_and_not_caught_up_fires_nothing() -> None:
    progress = PartitionProgress(caught_up=False, read_up_to_ms=-1)
    assert fire_horizon_ms(10**13, progress) == -1


def test_busy_partition_fires_up_to_the_last_stable_offset_it_has_reached() -> None:
    progress = PartitionProgress(caught_up=False, read_up_to_ms=50, stable_read_ms=80)
    assert fire_horizon_ms(100, progress) == 80
    assert may_fire(80, 100, progress)
    assert not may_fire(81, 100, progress)
