"""The partition store: pending count, timer heap order, lazy timers."""

from __future__ import annotations

from service.domain.rounds import ChatState, ClosedRound, Outcome, PendingRound
from service.state.store import PartitionStore


def pending(chat_id: str, deadline_ms: int) -> PendingRound:
    return PendingRound(f"r-{chat_id}", chat_id, "s", 0, deadline_ms, ())


def test_pending_count_follows_state_changes() -> None:
    store = PartitionStore(0)
    assert store.put(pending("a", 10)) is True
    assert store.put(pending("a", 10)) is False
    store.put(pending("b", 20))
    assert store.pending_count == 2
    store.put(ClosedRound("r-a", "a", Outcome.ACCEPTED, 5, 100))
    assert store.pending_count == 1
    store.forget("b")
    store.forget("never-there")
    assert store.pending_count == 0


def test_timers_pop_in_deadline_order_up_to_the_horizon_and_limit() -> None:
    store = PartitionStore(0)
    for chat_id, due in [("c", 30), ("a", 10), ("b", 20), ("d", 40)]:
        store.schedule(chat_id, due)
    assert store.next_due_ms() == 10
    assert store.pop_due(25, limit=10) == ["a", "b"]
    assert store.pop_due(100, limit=1) == ["c"]
    assert store.next_due_ms() == 40


def test_schedule_all_rebuilds_timers_from_states() -> None:
    store = PartitionStore(0)
    store.put(pending("a", 50))
    store.put(ClosedRound("r-b", "b", Outcome.ENDED, 5, 70))
    store.schedule_all()
    assert store.pop_due(100, limit=10) == ["a", "b"]


def test_restored_store_counts_pending_rounds_and_rebuilds_timers() -> None:
    states: dict[str, ChatState] = {
        "a": pending("a", 50),
        "b": ClosedRound("r-b", "b", Outcome.ENDED, 5, 70),
        "c": pending("c", 10),
    }
    store = PartitionStore.restored(3, dict(states))
    assert (store.partition, store.pending_count, store.chat_count) == (3, 2, 3)
    assert store.pop_due(100, limit=10) == ["c", "a", "b"]
