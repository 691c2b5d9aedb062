"""The round rules of issue #2, on plain values: no Kafka, no asyncio."""

from __future__ import annotations

from service.domain.decide import (
    on_chat_event,
    on_fan_out_finished,
    on_timer,
    on_token_rejected,
    resume_fan_out,
)
from service.domain.effects import (
    Effect,
    EmitChatbotMessage,
    EmitMissed,
    EmitTokenRejected,
    ForgetChat,
    Ignored,
    IgnoredWhy,
    Noted,
    NoteWhy,
    PutState,
    RoundClosed,
    ScheduleTimer,
    SendPushes,
)
from service.domain.events import TokenRejection
from service.domain.push import ApnsEnvironment, Provider, PushKind
from service.domain.rounds import ClosedRound, DeviceRef, Outcome, PendingRound
from tests.unit.factories import T0, agent, device, ended, joined, only, request, world


def started_round(effects: list[Effect]) -> PendingRound:
    (put,) = only(effects, PutState)
    assert isinstance(put.state, PendingRound)
    return put.state


def test_request_starts_a_round_with_deadline_from_event_time_and_site_setting() -> None:
    effects = on_chat_event(None, request(at_ms=T0 - 5_000), T0, world(agent()))
    round_ = started_round(effects)
    assert round_.deadline_ms == T0 - 5_000 + 60_000
    assert only(effects, ScheduleTimer) == [ScheduleTimer("chat-1", round_.deadline_ms)]


def test_event_override_of_time_to_accept_wins_over_the_site() -> None:
    effects = on_chat_event(None, request(time_to_accept_s=15), T0, world(agent()))
    assert started_round(effects).deadline_ms == T0 + 15_000


def test_fan_out_reaches_exactly_the_eligible_devices() -> None:
    agents = (
        agent("on", devices=(device("on-android"), device("on-iphone", Provider.APNS))),
        agent("unavailable", available=False),
        agent("toggle-off", push_enabled={"site-1": False}),
        agent("other-site-only", push_enabled={"site-2": True}),
        agent("other-account", account_id="acct-2"),
        agent("no-devices", devices=()),
    )
    effects = on_chat_event(None, request(), T0, world(*agents))
    (send,) = only(effects, SendPushes)
    assert [(p.device.agent_id, p.device.device_id) for p in send.pushes] == [
        ("on", "on-android"),
        ("on", "on-iphone"),
    ]
    assert send.report_delivery


def test_alert_content_names_site_and_visitor_collapses_per_chat_and_expires_at_deadline() -> None:
    sandbox_phone = device("ios", Provider.APNS, apns_environment=ApnsEnvironment.SANDBOX)
    effects = on_chat_event(None, request(visitor_name="Ada"), T0, world(agent(devices=(sandbox_phone,))))
    (send,) = only(effects, SendPushes)
    push = send.pushes[0].push
    assert push.kind is PushKind.HANDOFF_REQUESTED
    assert push.title is not None and "Alpine Tours" in push.title
    assert push.body is not None and "Ada" in push.body
    assert push.collapse_id == "chat-1"
    assert push.expires_at_ms == T0 + 60_000
    assert push.apns_environment is ApnsEnvironment.SANDBOX
    assert dict(push.data) == {
        "type": "handoff_requested",
        "chat_id": "chat-1",
        "site_id": "site-1",
        "request_id": "req-chat-1",
        "open_tab": "active",
    }


def test_no_push_for_a_round_whose_deadline_already_passed() -> None:
    effects = on_chat_event(None, request(at_ms=T0 - 61_000), T0, world(agent()))
    assert not only(effects, SendPushes)
    round_ = started_round(effects)
    assert round_.targets == ()
    assert only(effects, ScheduleTimer), "the late round must still end in a Missed"


def test_a_request_for_an_unknown_site_starts_a_round_that_pushes_nobody_and_is_reported() -> None:
    effects = on_chat_event(None, request(site_id="nope"), T0, world(agent()))
    round_ = started_round(effects)
    assert round_.targets == ()
    assert round_.deadline_ms == T0 + 120_000, "the default time to accept"
    assert only(effects, Noted) == [Noted(NoteWhy.SITE_UNKNOWN, "chat-1", "nope")]
    assert not only(effects, SendPushes)


def test_second_request_while_pending_changes_nothing() -> None:
    w = world(agent())
    pending = started_round(on_chat_event(None, request(), T0, w))
    assert on_chat_event(pending, request(), T0, w) == [Ignored("chat-1", IgnoredWhy.DUPLICATE_REQUEST)]
    assert on_chat_event(pending, request(event_id="other"), T0, w) == [
        Ignored("chat-1", IgnoredWhy.ROUND_ALREADY_PENDING)
    ]


def test_redelivered_request_after_close_is_ignored_but_a_new_request_starts_a_new_round() -> None:
    w = world(agent())
    closed = ClosedRound("req-chat-1", "chat-1", Outcome.ACCEPTED, T0, T0 + 3_600_000)
    assert on_chat_event(closed, request(), T0, w) == [Ignored("chat-1", IgnoredWhy.DUPLICATE_REQUEST)]
    new = started_round(on_chat_event(closed, request(event_id="req-2"), T0, w))
    assert new.request_id == "req-2"


def test_join_cancels_the_round_and_clears_notified_phones() -> None:
    w = world(agent(devices=(device("a"), device("b", Provider.APNS))))
    pending = started_round(on_chat_event(None, request(), T0, w))
    delivered = on_fan_out_finished(pending, pending.request_id, (DeviceRef("agent-1", "a"),))
    pending = started_round(delivered)
    effects = on_chat_event(pending, joined(), T0 + 2_000, w)
    assert not only(effects, EmitMissed)
    (put,) = only(effects, PutState)
    assert isinstance(put.state, ClosedRound) and put.state.outcome is Outcome.ACCEPTED
    (update,) = only(effects, SendPushes)
    assert [p.device.device_id for p in update.pushes] == ["a"], "only delivered devices get the update"
    assert update.pushes[0].push.kind is PushKind.HANDOFF_CLOSED
    assert update.pushes[0].push.data["outcome"] == "accepted"
    assert update.pushes[0].push.body == "Taken by an agent"  # the agent has no display_name
    assert "Ada" not in repr(update.pushes[0].push), "the update never names the visitor"
    assert not update.report_delivery


def test_end_cancels_the_round() -> None:
    w = world(agent())
    pending = started_round(on_chat_event(None, request(), T0, w))
    effects = on_chat_event(pending, ended(), T0 + 2_000, w)
    assert only(effects, RoundClosed)[0].outcome is Outcome.ENDED
    assert not only(effects, EmitMissed)


def test_deadline_emits_exactly_one_missed_and_one_chatbot_message_with_contact() -> None:
    w = world(agent())
    pending = started_round(on_chat_event(None, request(), T0, w))
    pending = pending.with_delivered(pending.targets)
    effects = on_timer(pending, pending.deadline_ms + 7, w)
    (missed,) = only(effects, EmitMissed)
    (chatbot,) = only(effects, EmitChatbotMessage)
    assert missed.event_id == "req-chat-1:missed"
    assert (missed.agents_notified, missed.devices_notified) == (1, 1)
    assert missed.deadline_ms == pending.deadline_ms
    assert chatbot.contact_email == "hello@alpine.example"
    assert "Alpine Tours" in chatbot.text and "hello@alpine.example" in chatbot.text and "+41" in chatbot.text
    assert only(effects, RoundClosed)[0].lateness_ms == 7
    (update,) = only(effects, SendPushes)
    assert update.pushes[0].push.data["outcome"] == "missed"


def test_timer_before_deadline_or_on_closed_round_does_nothing_until_memory_expires() -> None:
    w = world(agent())
    pending = started_round(on_chat_event(None, request(), T0, w))
    assert on_timer(pending, pending.deadline_ms - 1, w) == []
    closed = ClosedRound("req-chat-1", "chat-1", Outcome.MISSED, T0, T0 + 10)
    assert on_timer(closed, T0 + 9, w) == []
    assert on_timer(closed, T0 + 10, w) == [ForgetChat("chat-1")]
    assert on_timer(None, T0, w) == []


def test_join_after_missed_produces_nothing_but_is_remembered() -> None:
    closed = ClosedRound("req-chat-1", "chat-1", Outcome.MISSED, T0, T0 + 10)
    effects = on_chat_event(closed, joined(at_ms=T0), T0, world(agent()))
    assert only(effects, Ignored) == [Ignored("chat-1", IgnoredWhy.NO_PENDING_ROUND)]
    assert not only(effects, EmitMissed) and not only(effects, EmitChatbotMessage)
    assert not only(effects, SendPushes)
    (put,) = only(effects, PutState)
    assert isinstance(put.state, ClosedRound) and put.state.last_event_ms == T0


def test_join_stamped_after_the_deadline_finds_the_round_already_missed() -> None:
    w = world(agent())
    pending = started_round(on_chat_event(None, request(), T0, w))
    effects = on_chat_event(pending, joined(at_ms=pending.deadline_ms + 1), pending.deadline_ms + 500, w)
    assert len(only(effects, EmitMissed)) == 1
    assert only(effects, RoundClosed)[0].outcome is Outcome.MISSED


def test_closing_updates_can_be_switched_off() -> None:
    w = world(agent(), closing_updates=False)
    pending = started_round(on_chat_event(None, request(), T0, w))
    assert not only(on_chat_event(pending, joined(), T0 + 1, w), SendPushes)


def test_dead_token_is_reported_with_a_deterministic_id_and_skipped_afterwards() -> None:
    w = world(agent(devices=(device("a", token="tok-a"), device("b"))))
    rejection = TokenRejection("agent-1", "a", Provider.FCM, "UNREGISTERED", "f00")
    (emit,) = on_token_rejected(rejection, T0)
    assert emit == EmitTokenRejected(
        "token_rejected:agent-1:a:f00", "agent-1", "a", Provider.FCM, "UNREGISTERED", T0
    )
    w.agents.mark_token_dead("agent-1", "a", "tok-a")
    (send,) = only(on_chat_event(None, request(), T0, w), SendPushes)
    assert [p.device.device_id for p in send.pushes] == ["b"]


def test_fan_out_report_for_an_older_round_is_ignored() -> None:
    w = world(agent())
    pending = started_round(on_chat_event(None, request(), T0, w))
    assert on_fan_out_finished(pending, "some-older-request", ()) == []


def test_a_finished_fan_out_shares_the_targets_tuple_and_lets_the_visitor_name_go() -> None:
    w = world(agent())
    pending = started_round(on_chat_event(None, request(visitor_name="Ada"), T0, w))
    assert pending.visitor_name == "Ada"
    reached = tuple(DeviceRef(ref.agent_id, ref.device_id) for ref in pending.targets)
    (put,) = only(on_fan_out_finished(pending, pending.request_id, reached), PutState)
    assert isinstance(put.state, PendingRound)
    assert put.state.delivered is pending.targets
    assert put.state.visitor_name is None


def test_resume_pushes_an_interrupted_fan_out_only_while_in_time() -> None:
    w = world(agent())
    pending = started_round(on_chat_event(None, request(), T0, w))
    assert pending.delivered is None
    (again,) = only(resume_fan_out(pending, T0 + 1_000, w), SendPushes)
    assert len(again.pushes) == 1
    assert resume_fan_out(pending, pending.deadline_ms, w) == []
    assert resume_fan_out(pending.with_delivered(()), T0, w) == []


def test_a_site_deleted_while_a_round_runs_still_words_its_contact_message() -> None:
    w = world(agent())
    pending = started_round(on_chat_event(None, request(), T0, w))
    w.sites.remove("site-1")
    effects = on_timer(pending, pending.deadline_ms, w)
    (chatbot,) = only(effects, EmitChatbotMessage)
    assert chatbot.contact_email == "hello@alpine.example"
    assert not only(effects, Noted)
    later = on_chat_event(None, request("chat-2"), T0, w)
    assert only(later, Noted) == [Noted(NoteWhy.SITE_UNKNOWN, "chat-2", "site-1")], "deleted: unknown"
    assert not only(later, SendPushes)


def test_request_for_an_unknown_site_while_a_round_is_pending_changes_nothing() -> None:
    w = world(agent())
    pending = started_round(on_chat_event(None, request(), T0, w))
    effects = on_chat_event(pending, request(event_id="other", site_id="nope"), T0, w)
    assert effects == [Ignored("chat-1", IgnoredWhy.ROUND_ALREADY_PENDING)]
