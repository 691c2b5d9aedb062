"""The reminder (#12): when a round records one, when its timer sends it, to whom and saying what,
and that a round never reminds twice (stale timers, replays, a restore after the reminder)."""

from __future__ import annotations

from service.domain.decide import on_chat_event, on_fan_out_finished, on_timer
from service.domain.effects import Effect, EmitMissed, PutState, ScheduleTimer, SendPushes
from service.domain.push import LocalizedText, PushKind
from service.domain.rounds import ClosedRound, DeviceRef, PendingRound, timer_due_ms
from service.state.changelog import decode_state, encode_state
from service.state.store import PartitionStore
from tests.unit.factories import T0, agent, device, joined, only, request, site, world

REMINDING = site(time_to_accept_s=300, reminder_after_s=60)
"""Reminds a minute after the request, four minutes before the deadline."""
REMINDER_AT = T0 + 60_000
DEADLINE = T0 + 300_000


def written(effects: list[Effect]) -> PendingRound:
    """The one round the effects write."""
    (put,) = only(effects, PutState)
    assert isinstance(put.state, PendingRound)
    return put.state


def reminders(effects: list[Effect]) -> list[SendPushes]:
    return [
        send
        for send in only(effects, SendPushes)
        if any(p.push.kind is PushKind.HANDOFF_REMINDER for p in send.pushes)
    ]


def test_a_round_of_a_reminding_site_records_its_reminder_and_arms_only_that_timer() -> None:
    effects = on_chat_event(None, request(), T0, world(agent(), sites=(REMINDING,)))
    round_ = written(effects)
    assert (round_.reminder_at_ms, round_.deadline_ms) == (REMINDER_AT, DEADLINE)
    assert only(effects, ScheduleTimer) == [ScheduleTimer("chat-1", REMINDER_AT)]
    assert timer_due_ms(round_) == REMINDER_AT


def test_no_reminder_unless_it_falls_strictly_between_now_and_the_deadline() -> None:
    cases = {
        "site asks for none": (site(), request(), T0),
        "reminder at the deadline": (site(time_to_accept_s=60, reminder_after_s=60), request(), T0),
        "reminder after the event's own shorter time to accept": (
            REMINDING,
            request(time_to_accept_s=30),
            T0,
        ),
        "request read after its reminder time": (REMINDING, request(), REMINDER_AT),
        "request read after its deadline": (REMINDING, request(), DEADLINE + 1),
    }
    for why, (snapshot, event, now_ms) in cases.items():
        effects = on_chat_event(None, event, now_ms, world(agent(), sites=(snapshot,)))
        round_ = written(effects)
        assert round_.reminder_at_ms == -1, why
        assert only(effects, ScheduleTimer) == [ScheduleTimer("chat-1", round_.deadline_ms)], why


def test_an_unknown_site_gives_no_reminder() -> None:
    effects = on_chat_event(None, request(site_id="site-new"), T0, world(agent(), sites=(REMINDING,)))
    assert written(effects).reminder_at_ms == -1


def test_the_reminder_goes_once_to_the_devices_that_may_show_the_alert() -> None:
    phones = (device("got-it"), device("unsure"), device("rejected"), device("failed"), device("late"))
    w = world(agent(devices=phones), sites=(REMINDING,))
    round_ = written(on_chat_event(None, request(visitor_name="Ada"), T0, w))
    ref = {d.device_id: DeviceRef("agent-1", d.device_id) for d in phones}
    (put,) = only(
        on_fan_out_finished(
            round_,
            round_.request_id,
            delivered=(ref["got-it"],),
            covered=(ref["got-it"], ref["unsure"], ref["rejected"], ref["failed"]),
            unsure=(ref["unsure"],),
            rejected=(ref["rejected"],),
            failed=(ref["failed"],),
        ),
        PutState,
    )
    assert isinstance(put.state, PendingRound)

    effects = on_timer(put.state, REMINDER_AT, w)

    (send,) = reminders(effects)
    assert [p.device.device_id for p in send.pushes] == ["got-it", "late", "unsure"]
    assert not send.report_delivery
    assert written(effects) == put.state.with_reminder_at(-1)
    assert only(effects, ScheduleTimer) == [ScheduleTimer("chat-1", DEADLINE)]
    for addressed in send.pushes:
        push = addressed.push
        assert (push.collapse_id, push.expires_at_ms) == ("chat-1", DEADLINE)
        assert push.title == "Visitor still waiting · Alpine Tours"
        assert push.body == "A live chat visitor is still waiting. Accept within 4 min."
        assert push.title_loc == LocalizedText("livechat_reminder_title", ("Alpine Tours",))
        assert push.body_loc == LocalizedText("livechat_reminder_body", ("4",))
        assert push.data["type"] == "handoff_reminder"
        assert push.data["minutes_left"] == "4"
        assert "Ada" not in f"{push.title}{push.body}{push.data}{push.title_loc}{push.body_loc}"


def test_minutes_left_are_rounded_up() -> None:
    w = world(agent(), sites=(site(time_to_accept_s=90, reminder_after_s=45),))
    round_ = written(on_chat_event(None, request(), T0, w))
    (send,) = reminders(on_timer(round_, T0 + 45_000, w))
    assert send.pushes[0].push.body_loc == LocalizedText("livechat_reminder_body", ("1",))


def test_an_agent_no_longer_available_is_not_reminded() -> None:
    w = world(agent(), sites=(REMINDING,))
    round_ = written(on_chat_event(None, request(), T0, w))
    w.agents.upsert(agent(available=False))
    effects = on_timer(round_, REMINDER_AT, w)
    assert reminders(effects) == []
    assert written(effects).reminder_at_ms == -1


def test_a_round_never_reminds_twice_stale_timer_replay_or_restore() -> None:
    w = world(agent(), sites=(REMINDING,))
    round_ = written(on_chat_event(None, request(), T0, w))
    first = on_timer(round_, REMINDER_AT, w)
    assert len(reminders(first)) == 1
    after = written(first)

    # A second timer for the same instant (a duplicate in the heap) and later ones before the deadline.
    for now_ms in (REMINDER_AT, REMINDER_AT + 1, DEADLINE - 1):
        assert on_timer(after, now_ms, w) == []
    # The round as the changelog restores it: no reminder due, the deadline's timer only.
    restored = decode_state(encode_state(after))
    assert restored == after
    store = PartitionStore.restored(0, {"chat-1": restored})
    assert store.pop_due(DEADLINE - 1, 10) == []
    assert store.pop_due(DEADLINE, 10) == ["chat-1"]
    assert on_timer(restored, REMINDER_AT + 5, w) == []
    # Replaying the request (a redelivery) starts nothing, so nothing reminds again either.
    assert reminders(on_chat_event(after, request(), REMINDER_AT + 5, w)) == []


def test_a_restored_round_whose_reminder_is_due_still_gets_it_then_its_deadline() -> None:
    w = world(agent(), sites=(REMINDING,))
    round_ = written(on_chat_event(None, request(), T0, w))
    store = PartitionStore.restored(0, {"chat-1": decode_state(encode_state(round_))})
    assert store.pop_due(REMINDER_AT - 1, 10) == []
    assert store.pop_due(REMINDER_AT, 10) == ["chat-1"]
    state = store.get("chat-1")
    assert isinstance(state, PendingRound)
    effects = on_timer(state, REMINDER_AT, w)
    assert len(reminders(effects)) == 1
    for effect in only(effects, ScheduleTimer):
        store.schedule(effect.chat_id, effect.due_ms)
    store.put(written(effects))
    assert store.pop_due(DEADLINE, 10) == ["chat-1"]
    missed = on_timer(written(effects), DEADLINE, w)
    assert len(only(missed, EmitMissed)) == 1
    assert reminders(missed) == []


def test_no_reminder_after_a_join_or_once_the_deadline_passed() -> None:
    w = world(agent(), sites=(REMINDING,))
    round_ = written(on_chat_event(None, request(), T0, w))
    (put,) = only(on_chat_event(round_, joined(at_ms=T0 + 30_000), T0 + 30_000, w), PutState)
    assert isinstance(put.state, ClosedRound)
    assert on_timer(put.state, REMINDER_AT, w) == []
    # A worker far behind fires the reminder's timer only after the deadline: missed, no reminder.
    late = on_timer(round_, DEADLINE + 1, w)
    assert len(only(late, EmitMissed)) == 1
    assert reminders(late) == []
