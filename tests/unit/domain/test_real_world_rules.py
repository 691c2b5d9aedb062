"""The rules of issue #10 on plain values: clocks that lie, producers that race, replays,
unknown sites and agents who become eligible during a round."""

from __future__ import annotations

from service.domain.decide import (
    on_chat_event,
    on_eligibility_changed,
    on_fan_out_finished,
    on_timer,
    resume_fan_out,
)
from service.domain.directory import sites_gaining
from service.domain.effects import (
    Effect,
    EmitChatbotMessage,
    EmitMissed,
    Ignored,
    IgnoredWhy,
    MissedWhen,
    Noted,
    NoteWhy,
    PutState,
    RoundClosed,
    SendPushes,
)
from service.domain.push import PushKind
from service.domain.rounds import ClosedRound, DeviceRef, Outcome, PendingRound
from tests.unit.factories import T0, agent, device, ended, joined, only, request, site, world


def state_of(effects: list[Effect]) -> PendingRound | ClosedRound:
    (put,) = only(effects, PutState)
    return put.state


def pending(effects: list[Effect]) -> PendingRound:
    state = state_of(effects)
    assert isinstance(state, PendingRound)
    return state


def devices_of(send: SendPushes) -> list[str]:
    return [push.device.device_id for push in send.pushes]


# -- 1. clocks ------------------------------------------------------------------------------------


def test_a_join_stamped_after_the_deadline_by_a_fast_clock_but_read_before_it_accepts_the_chat() -> None:
    w = world(agent())
    round_ = pending(on_chat_event(None, request(), T0, w))
    fast_join = joined(at_ms=round_.deadline_ms + 120_000)  # the backend's clock runs 2+ minutes ahead
    effects = on_chat_event(round_, fast_join, T0 + 5_000, w, arrived_ms=T0 + 5_000)
    assert not only(effects, EmitMissed) and not only(effects, EmitChatbotMessage)
    (closed,) = only(effects, RoundClosed)
    assert closed.outcome is Outcome.ACCEPTED


def test_the_arrival_bounds_the_join_even_when_the_worker_reads_it_after_the_deadline() -> None:
    w = world(agent())
    round_ = pending(on_chat_event(None, request(), T0, w))
    fast_join = joined(at_ms=round_.deadline_ms + 120_000)
    late_read = round_.deadline_ms + 30_000  # a lagging worker; the broker appended it in time
    effects = on_chat_event(round_, fast_join, late_read, w, arrived_ms=round_.deadline_ms - 1)
    assert only(effects, RoundClosed)[0].outcome is Outcome.ACCEPTED


def test_a_join_that_really_arrived_after_the_deadline_still_finds_the_round_missed() -> None:
    w = world(agent())
    round_ = pending(on_chat_event(None, request(), T0, w))
    at = round_.deadline_ms + 1
    effects = on_chat_event(round_, joined(at_ms=at), at + 10, w, arrived_ms=at)
    assert len(only(effects, EmitMissed)) == 1


def test_a_request_stamped_in_the_future_waits_from_its_arrival() -> None:
    w = world(agent())
    effects = on_chat_event(None, request(at_ms=T0 + 240_000), T0, w, arrived_ms=T0)
    round_ = pending(effects)
    assert round_.requested_at_ms == T0
    assert round_.deadline_ms == T0 + 60_000, "the site's 60 s from arrival, not from the claim"
    assert round_.request_claim_ms == T0 + 240_000


def test_a_request_stamped_in_the_past_keeps_its_own_time() -> None:
    effects = on_chat_event(None, request(at_ms=T0 - 5_000), T0, world(agent()), arrived_ms=T0)
    assert pending(effects).deadline_ms == T0 + 55_000
    assert pending(effects).claimed_at_ms == -1, "nothing extra stored when claim and trusted time agree"


# -- 2. producers race ----------------------------------------------------------------------------


def test_a_request_read_after_the_join_of_the_same_chat_starts_nothing() -> None:
    w = world(agent())
    join_effects = on_chat_event(None, joined(at_ms=T0 + 2_000), T0 + 2_000, w)
    memory = state_of(join_effects)
    assert isinstance(memory, ClosedRound) and memory.last_event_ms == T0 + 2_000
    effects = on_chat_event(memory, request(at_ms=T0), T0 + 2_100, w)
    assert effects == [Ignored("chat-1", IgnoredWhy.STALE_REQUEST)]


def test_a_request_read_after_the_end_of_the_same_chat_starts_nothing() -> None:
    w = world(agent())
    memory = state_of(on_chat_event(None, ended(at_ms=T0 + 2_000), T0 + 2_000, w))
    assert on_chat_event(memory, request(at_ms=T0 + 2_000), T0 + 2_100, w) == [
        Ignored("chat-1", IgnoredWhy.STALE_REQUEST)
    ]


def test_a_request_made_after_the_last_join_starts_a_round() -> None:
    w = world(agent())
    memory = state_of(on_chat_event(None, joined(at_ms=T0), T0, w))
    effects = on_chat_event(memory, request(at_ms=T0 + 1_000), T0 + 1_000, w)
    assert only(effects, SendPushes)


def test_a_fast_joining_clock_cannot_hide_a_later_request() -> None:
    """The join's time counts no later than its arrival, so a request made after it starts."""
    w = world(agent())
    memory = state_of(on_chat_event(None, joined(at_ms=T0 + 600_000), T0, w, arrived_ms=T0))
    assert isinstance(memory, ClosedRound) and memory.last_event_ms == T0
    assert only(on_chat_event(memory, request(at_ms=T0 + 1_000), T0 + 1_000, w), SendPushes)


def test_a_closed_round_remembers_its_last_join_or_end() -> None:
    w = world(agent())
    round_ = pending(on_chat_event(None, request(), T0, w))
    accepted = state_of(on_chat_event(round_, joined(at_ms=T0 + 1_000), T0 + 1_000, w))
    assert isinstance(accepted, ClosedRound) and accepted.last_event_ms == T0 + 1_000
    after_end = state_of(on_chat_event(accepted, ended(at_ms=T0 + 9_000), T0 + 9_000, w))
    assert isinstance(after_end, ClosedRound) and after_end.last_event_ms == T0 + 9_000
    assert after_end.request_id == round_.request_id, "the round's own id is still recognised"
    stale = request(event_id="retry-of-an-old-one", at_ms=T0 + 5_000)
    assert on_chat_event(after_end, stale, T0 + 9_500, w) == [Ignored("chat-1", IgnoredWhy.STALE_REQUEST)]


def test_an_older_join_read_later_does_not_rewind_the_memory() -> None:
    w = world(agent())
    memory = state_of(on_chat_event(None, ended(at_ms=T0 + 9_000), T0 + 9_000, w))
    effects = on_chat_event(memory, joined(at_ms=T0 + 1_000), T0 + 9_100, w)
    assert effects == [Ignored("chat-1", IgnoredWhy.NO_PENDING_ROUND)]


def test_the_same_request_resent_under_a_new_id_after_its_round_closed_starts_nothing() -> None:
    w = world(agent())
    round_ = pending(on_chat_event(None, request(at_ms=T0), T0, w))
    missed = state_of(on_timer(round_, round_.deadline_ms, w))
    assert isinstance(missed, ClosedRound)
    resent = request(event_id="new-cloudevents-id", at_ms=T0)
    assert on_chat_event(missed, resent, round_.deadline_ms + 10, w) == [
        Ignored("chat-1", IgnoredWhy.STALE_REQUEST)
    ]
    genuinely_new = request(event_id="visitor-asks-again", at_ms=round_.deadline_ms + 5)
    assert only(on_chat_event(missed, genuinely_new, round_.deadline_ms + 10, w), SendPushes)


def test_a_resent_request_is_recognised_by_its_claim_even_when_its_first_copy_came_from_the_future() -> None:
    w = world(agent())
    first = request(at_ms=T0 + 200_000)
    round_ = pending(on_chat_event(None, first, T0, w, arrived_ms=T0))
    closed = state_of(on_chat_event(round_, joined(at_ms=T0 + 1_000), T0 + 1_000, w))
    resent = request(event_id="resent", at_ms=T0 + 200_000)
    assert on_chat_event(closed, resent, T0 + 150_000, w, arrived_ms=T0 + 150_000) == [
        Ignored("chat-1", IgnoredWhy.STALE_REQUEST)
    ]


# -- 3. replays and backlogs ----------------------------------------------------------------------


def test_a_replayed_request_days_old_pushes_nobody_and_its_missed_is_late_without_chatbot() -> None:
    w = world(agent())
    two_days = 2 * 86_400_000
    round_ = pending(on_chat_event(None, request(at_ms=T0 - two_days), T0, w))
    assert round_.expired_on_arrival and round_.targets == ()
    effects = on_timer(round_, T0, w)
    (missed,) = only(effects, EmitMissed)
    assert missed.late and missed.expired_on_arrival
    assert not only(effects, EmitChatbotMessage)
    assert only(effects, RoundClosed)[0].missed_when is MissedWhen.EXPIRED_ON_ARRIVAL
    assert only(effects, Noted) == [Noted(NoteWhy.MISSED_WITHOUT_CHATBOT, "chat-1", "site-1")]


def test_a_request_expired_on_arrival_by_less_than_the_delay_still_answers_the_visitor() -> None:
    w = world(agent())
    round_ = pending(on_chat_event(None, request(at_ms=T0 - 70_000), T0, w))
    effects = on_timer(round_, T0, w)
    (missed,) = only(effects, EmitMissed)
    assert not missed.late and missed.expired_on_arrival
    assert len(only(effects, EmitChatbotMessage)) == 1
    assert only(effects, RoundClosed)[0].missed_when is MissedWhen.EXPIRED_ON_ARRIVAL


def test_a_round_held_in_time_but_reported_after_the_delay_is_late() -> None:
    w = world(agent(), chatbot_max_delay_ms=300_000)
    round_ = pending(on_chat_event(None, request(), T0, w))
    in_time = on_timer(round_, round_.deadline_ms + 300_000, w)
    assert only(in_time, RoundClosed)[0].missed_when is MissedWhen.IN_TIME
    assert only(in_time, EmitChatbotMessage)
    late = on_timer(round_, round_.deadline_ms + 300_001, w)
    assert only(late, RoundClosed)[0].missed_when is MissedWhen.LATE
    assert only(late, EmitMissed)[0].late and not only(late, EmitChatbotMessage)


# -- 4. unknown sites ---------------------------------------------------------------------------


def test_a_round_whose_site_never_arrives_is_missed_with_the_default_text() -> None:
    w = world(agent())
    round_ = pending(on_chat_event(None, request(site_id="late-site"), T0, w))
    effects = on_timer(round_, round_.deadline_ms, w)
    (chatbot,) = only(effects, EmitChatbotMessage)
    assert chatbot.text and chatbot.contact_email is None and chatbot.contact_phone is None
    assert only(effects, Noted) == [Noted(NoteWhy.MISSED_WITHOUT_SITE, "chat-1", "late-site")]


def test_a_site_that_arrives_during_the_grace_gets_its_agents_pushed() -> None:
    w = world(agent(push_enabled={"late-site": True}, devices=(device("a"),)))
    round_ = pending(on_chat_event(None, request(site_id="late-site", visitor_name="Ada"), T0, w))
    w.sites.upsert(site("late-site"))
    effects = on_eligibility_changed(round_.site_id, [round_], T0 + 1_000, w)
    (send,) = only(effects, SendPushes)
    assert devices_of(send) == ["a"] and send.report_delivery
    assert send.pushes[0].push.body is not None and "Ada" in send.pushes[0].push.body
    assert pending(effects).targets == (DeviceRef("agent-1", "a"),)


# -- 6. pushes follow the round -------------------------------------------------------------------


def test_every_push_names_its_request_so_a_closing_update_never_clears_the_next_round() -> None:
    w = world(agent())
    round_ = pending(on_chat_event(None, request(event_id="req-A"), T0, w))
    (alert,) = only(on_chat_event(None, request(event_id="req-A"), T0, w), SendPushes)
    assert alert.pushes[0].push.data["request_id"] == "req-A"
    (update,) = only(on_chat_event(round_, joined(), T0 + 1_000, w), SendPushes)
    assert update.pushes[0].push.kind is PushKind.HANDOFF_CLOSED
    assert update.pushes[0].push.data["request_id"] == "req-A"


def test_an_agent_who_becomes_eligible_during_the_round_is_pushed_once_while_in_time() -> None:
    w = world(agent("early", devices=(device("e"),)))
    round_ = pending(on_chat_event(None, request(), T0, w))
    w.agents.upsert(agent("late", available=True, devices=(device("l1"), device("l2"))))
    assert sites_gaining(agent("late")) == ("site-1",)
    effects = on_eligibility_changed(round_.site_id, [round_], T0 + 1_000, w)
    (send,) = only(effects, SendPushes)
    assert devices_of(send) == ["l1", "l2"]
    extended = pending(effects)
    assert on_eligibility_changed(extended.site_id, [extended], T0 + 2_000, w) == [], "not twice"
    assert on_eligibility_changed(round_.site_id, [round_], round_.deadline_ms, w) == [], (
        "not after the deadline"
    )


def test_one_site_change_pushes_every_pending_round_of_the_site_still_in_time() -> None:
    w = world(agent("early", devices=(device("e"),)))
    first = pending(on_chat_event(None, request("chat-a"), T0, w))
    second = pending(on_chat_event(None, request("chat-b", time_to_accept_s=5), T0, w))
    w.agents.upsert(agent("late", devices=(device("l"),)))
    effects = on_eligibility_changed("site-1", [first, second], T0 + 10_000, w)
    assert [send.chat_id for send in only(effects, SendPushes)] == ["chat-a"], "chat-b's deadline passed"
    assert on_eligibility_changed("unknown-site", [first], T0, w) == []


def test_devices_added_during_the_round_are_awaited_separately_from_the_first_fan_out() -> None:
    w = world(agent("early", devices=(device("e"),)))
    round_ = pending(on_chat_event(None, request(), T0, w))
    first = pending(on_fan_out_finished(round_, round_.request_id, round_.targets, round_.targets))
    w.agents.upsert(agent("late", devices=(device("l"),)))
    extended = pending(on_eligibility_changed(first.site_id, [first], T0 + 1_000, w))
    late_ref = DeviceRef("late", "l")
    assert extended.awaited == (late_ref,)
    assert set(extended.notified) == {DeviceRef("early", "e"), late_ref}
    done = pending(on_fan_out_finished(extended, round_.request_id, (), (late_ref,), unsure=(late_ref,)))
    assert done.awaited == () and done.notified == (DeviceRef("early", "e"),)
    (update,) = only(on_chat_event(done, joined(), T0 + 2_000, w), SendPushes)
    assert devices_of(update) == ["e", "l"], "an unsure device gets the closing update too"
    (missed,) = only(on_timer(done, done.deadline_ms, w), EmitMissed)
    assert missed.devices_notified == 1, "but does not count as notified"


def test_an_extension_reported_before_the_first_fan_out_keeps_the_first_awaited() -> None:
    w = world(agent("early", devices=(device("e"),)))
    round_ = pending(on_chat_event(None, request(), T0, w))
    w.agents.upsert(agent("late", devices=(device("l"),)))
    extended = pending(on_eligibility_changed(round_.site_id, [round_], T0 + 1_000, w))
    late_ref = DeviceRef("late", "l")
    reported = pending(on_fan_out_finished(extended, round_.request_id, (late_ref,), (late_ref,)))
    assert reported.awaited == (DeviceRef("early", "e"),)
    assert set(reported.notified) == {DeviceRef("early", "e"), late_ref}


def test_resume_after_restore_uses_eligibility_as_it_is_now() -> None:
    w = world(agent("stays", devices=(device("s"),)), agent("leaves", devices=(device("x"),)))
    round_ = pending(on_chat_event(None, request(), T0, w))
    assert round_.delivered is None  # the crash came before the fan-out reported
    w.agents.upsert(agent("leaves", available=False, devices=(device("x"),)))
    w.agents.upsert(agent("arrives", devices=(device("n"),)))
    effects = resume_fan_out(round_, T0 + 1_000, w)
    (send,) = only(effects, SendPushes)
    assert sorted(devices_of(send)) == ["n", "s"]
    assert DeviceRef("arrives", "n") in pending(effects).targets


def test_an_agent_without_devices_or_availability_gains_no_site() -> None:
    assert sites_gaining(agent(available=False)) == ()
    assert sites_gaining(agent(devices=())) == ()
    assert sites_gaining(agent(push_enabled={"a": True, "b": False})) == ("a",)
