"""At most one reminder per round across restarts (#12), through the partition step: the round with
its reminder cleared is written in the same step (transaction) as the reminder is decided, so a
worker restored from what was committed never sends it again; one restored from before that
commit (the transaction failed, so no push went out) sends it then."""

from __future__ import annotations

from devtools import traffic
from service.config_builders import decode_limits
from service.domain.push import PushKind
from service.partition.records import OutRecord
from service.partition.step import PartitionStep, StepResult
from service.settings import Settings
from service.state.changelog import StateReplay
from service.state.store import PartitionStore
from tests.unit.factories import T0, agent, site, world
from tests.unit.partition.test_step import Record

SETTINGS = Settings()
REMINDER_AT = T0 + 60_000
DEADLINE = T0 + 300_000


def step() -> PartitionStep:
    w = world(agent(), sites=(site(time_to_accept_s=300, reminder_after_s=60),))
    return PartitionStep(SETTINGS, w, decode_limits(SETTINGS))


def reminders_sent(result: StepResult) -> int:
    return sum(push.push.kind is PushKind.HANDOFF_REMINDER for send in result.pushes for push in send.pushes)


def changelog(results: list[StepResult]) -> list[OutRecord]:
    return [r for result in results for r in result.records if r.topic == SETTINGS.topic_changelog]


def restored(records: list[OutRecord]) -> PartitionStore:
    replay = StateReplay()
    replay.apply(records)
    return PartitionStore.restored(4, replay.states)


def start_round(core: PartitionStep, store: PartitionStore) -> StepResult:
    value = traffic.handoff_requested("c1", "site-1", T0, event_id="r-c1")
    return core.run(store, [Record(b"c1", value, 0)], [], T0, T0)


def test_a_worker_restored_after_the_reminder_committed_never_sends_it_again() -> None:
    core, store = step(), PartitionStore(4)
    started = start_round(core, store)
    reminded = core.run(store, [], [], REMINDER_AT, REMINDER_AT)
    assert reminders_sent(reminded) == 1

    # Restart: the new owner replays the committed changelog and arms each chat's next timer.
    again = restored(changelog([started, reminded]))
    steps = [core.run(again, [], [], now, now) for now in (REMINDER_AT, REMINDER_AT + 1, DEADLINE - 1)]
    assert [reminders_sent(result) for result in steps] == [0, 0, 0]
    missed = core.run(again, [], [], DEADLINE, DEADLINE)
    assert [r.key for r in missed.records if r.topic == SETTINGS.topic_missed] == [b"c1"]
    assert reminders_sent(missed) == 0


def test_a_stale_timer_in_the_same_worker_sends_nothing_more() -> None:
    core, store = step(), PartitionStore(4)
    start_round(core, store)
    store.schedule("c1", REMINDER_AT)  # a duplicate timer (timers are never cancelled)
    first = core.run(store, [], [], REMINDER_AT, REMINDER_AT)
    second = core.run(store, [], [], REMINDER_AT + 1, REMINDER_AT + 1)
    assert (reminders_sent(first), reminders_sent(second)) == (1, 0)


def test_a_worker_restored_from_before_the_reminder_committed_sends_it() -> None:
    core, store = step(), PartitionStore(4)
    started = start_round(core, store)
    # The reminder's step ran but its transaction failed: its records and pushes are dropped.
    core.run(store, [], [], REMINDER_AT, REMINDER_AT)

    again = restored(changelog([started]))
    assert again.next_due_ms() == REMINDER_AT
    resent = core.run(again, [], [], REMINDER_AT + 5, REMINDER_AT + 5)
    assert reminders_sent(resent) == 1
    assert again.next_due_ms() == DEADLINE
