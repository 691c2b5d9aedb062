"""The round's pushes on plain values: the site's templates and localization keys reach the alert,
a `hide_visitor_name` site's visitor is named in no push of the round and kept by no round state
(a property over whole rounds), and the closing update of an accepted chat names who took it."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.decide import (
    World,
    on_chat_event,
    on_eligibility_changed,
    on_fan_out_finished,
    on_timer,
    resume_fan_out,
)
from service.domain.effects import Effect, PutState, SendPushes
from service.domain.events import SiteSnapshot
from service.domain.messages import BODY_ANONYMOUS_KEY, BODY_KEY, TITLE_KEY
from service.domain.push import LocalizedText, Push, PushKind
from service.domain.rounds import ChatState, PendingRound
from tests.unit.factories import T0, agent, ended, joined, only, request, site, world


def _state(effects: list[Effect]) -> PendingRound:
    (put,) = only(effects, PutState)
    assert isinstance(put.state, PendingRound)
    return put.state


def _pushes(effects: list[Effect]) -> list[Push]:
    return [addressed.push for send in only(effects, SendPushes) for addressed in send.pushes]


def test_the_alert_carries_the_sites_template_its_keys_and_a_lock_screen_version() -> None:
    templated = site(push_title="{site_name}: new chat")
    (alert,) = _pushes(
        on_chat_event(None, request(visitor_name="Ada"), T0, world(agent(), sites=(templated,)))
    )
    assert (alert.title, alert.title_loc) == ("Alpine Tours: new chat", None)
    assert alert.body_loc == LocalizedText(BODY_KEY, ("Ada",))
    assert alert.public_title == "Alpine Tours: new chat"
    assert alert.public_body is not None and "Ada" not in alert.public_body
    (plain,) = _pushes(on_chat_event(None, request(visitor_name="Ada"), T0, world(agent())))
    assert plain.title_loc == LocalizedText(TITLE_KEY, ("Alpine Tours",))


def test_a_site_that_hides_the_name_gets_an_alert_without_it_and_the_round_keeps_none() -> None:
    effects = on_chat_event(
        None, request(visitor_name="Ada"), T0, world(agent(), sites=(site(hide_visitor_name=True),))
    )
    assert _state(effects).visitor_name is None
    (alert,) = _pushes(effects)
    assert "Ada" not in repr(alert)
    assert alert.body_loc == LocalizedText(BODY_ANONYMOUS_KEY)
    assert (alert.public_title, alert.public_body) == (None, None), "nothing to hide: title and body are safe"
    # The same request on a site that does not hide it: the name is there (this test can fail).
    shown = on_chat_event(None, request(visitor_name="Ada"), T0, world(agent()))
    assert _state(shown).visitor_name == "Ada"
    assert "Ada" in (_pushes(shown)[0].body or "")


def test_a_round_started_before_its_site_was_known_lets_the_name_go_when_the_site_hides_it() -> None:
    w = world(agent(available=False), sites=())
    pending = _state(on_chat_event(None, request(visitor_name="Ada"), T0, w))
    assert pending.visitor_name == "Ada", "kept to word the alert once the site arrives"
    w.sites.upsert(site(hide_visitor_name=True))
    effects = on_eligibility_changed("site-1", [pending], T0 + 1_000, w)
    assert _pushes(effects) == [], "nobody eligible"
    assert _state(effects).visitor_name is None, "written without the name even with nothing to push"
    w.agents.upsert(agent())
    effects = on_eligibility_changed("site-1", [pending], T0 + 2_000, w)
    (alert,) = _pushes(effects)
    assert "Ada" not in repr(alert)
    assert _state(effects).visitor_name is None


def _closing_update(effects: list[Effect]) -> Push:
    updates = [push for push in _pushes(effects) if push.kind is PushKind.HANDOFF_CLOSED]
    assert updates
    assert len({(u.title, u.body, u.body_loc, tuple(u.data.items())) for u in updates}) == 1, "same words"
    return updates[0]


def _pending(w: World) -> PendingRound:
    pending = _state(on_chat_event(None, request(), T0, w))
    return _state(on_fan_out_finished(pending, pending.request_id, pending.targets))


def test_the_accepted_update_names_the_joining_agent_by_display_name() -> None:
    w = world(agent("agent-1"), agent("agent-2", display_name="Bea Müller"))
    update = _closing_update(on_chat_event(_pending(w), joined(agent_id="agent-2"), T0 + 2_000, w))
    assert update.data["agent_id"] == "agent-2"
    assert update.data["agent_name"] == "Bea Müller"
    assert update.body == "Taken by Bea Müller"
    assert update.body_loc == LocalizedText("livechat_closed_accepted_by", ("Bea Müller",))
    assert update.title == "Live chat request · Alpine Tours"


def test_without_a_display_name_the_update_names_the_agent_id_in_data_and_reads_neutrally() -> None:
    w = world(agent("agent-1"))
    for joiner in ("agent-1", "agent-not-in-the-directory"):
        update = _closing_update(on_chat_event(_pending(w), joined(agent_id=joiner), T0 + 2_000, w))
        assert update.data["agent_id"] == joiner
        assert "agent_name" not in update.data
        assert (update.body, update.body_loc) == (
            "Taken by an agent",
            LocalizedText("livechat_closed_accepted"),
        )


def test_ended_and_missed_updates_name_no_agent() -> None:
    w = world(agent("agent-1", display_name="Bea"))
    ended_update = _closing_update(on_chat_event(_pending(w), ended(), T0 + 2_000, w))
    pending = _pending(w)
    missed_update = _closing_update(on_timer(pending, pending.deadline_ms, w))
    for update, body in (
        (ended_update, "The visitor left"),
        (missed_update, "Missed: nobody answered in time"),
    ):
        assert update.body == body
        assert "agent_id" not in update.data and "agent_name" not in update.data


# --- the property: no visitor name in any push of a round of a site that hides it ----------------


@dataclass
class _Round:
    """Drives one chat through the core, keeping what it pushed and every state it wrote."""

    world: World
    state: ChatState | None = None
    pushes: list[Push] = field(default_factory=list)
    states: list[ChatState] = field(default_factory=list)

    def apply(self, effects: list[Effect]) -> None:
        self.pushes += _pushes(effects)
        for put in only(effects, PutState):
            self.states.append(put.state)
            self.state = put.state


TEMPLATES = st.sampled_from(
    [
        (None, None),
        ("{visitor_name} @ {site_name}", "{visitor_name} is waiting"),
        ("{site_name}", "Visitor {visitor_name}"),
        ("New chat", "On {site_name}"),
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    visitor_name=st.from_regex(r"\AZq[a-z]{3,12}\Z"),
    templates=TEMPLATES,
    site_known_at_start=st.booleans(),
    agent_becomes_eligible=st.booleans(),
    fan_out_reported=st.booleans(),
    resumed=st.booleans(),
    reminder_after_s=st.sampled_from([None, 10]),
    ending=st.sampled_from(["join", "end", "miss"]),
)
def test_no_push_of_a_round_names_the_visitor_of_a_site_that_hides_it(
    visitor_name: str,
    templates: tuple[str | None, str | None],
    site_known_at_start: bool,
    agent_becomes_eligible: bool,
    fan_out_reported: bool,
    resumed: bool,
    reminder_after_s: int | None,
    ending: str,
) -> None:
    hiding = SiteSnapshot(
        "site-1",
        "acct-1",
        name="Alpine Tours",
        time_to_accept_s=60,
        contact_email=None,
        contact_phone=None,
        push_title=templates[0],
        push_body=templates[1],
        hide_visitor_name=True,
        reminder_after_s=reminder_after_s,
    )
    w = world(
        agent("agent-1", display_name="Bea"),
        agent("agent-2", available=False),
        sites=(hiding,) if site_known_at_start else (),
    )
    chat = _Round(w)
    chat.apply(on_chat_event(None, request(visitor_name=visitor_name), T0, w))
    if not site_known_at_start:
        w.sites.upsert(hiding)
        chat.apply(on_eligibility_changed("site-1", [_as_pending(chat.state)], T0 + 1_000, w))
    if agent_becomes_eligible:
        w.agents.upsert(agent("agent-2"))
        chat.apply(on_eligibility_changed("site-1", [_as_pending(chat.state)], T0 + 2_000, w))
    pending = _as_pending(chat.state)
    if fan_out_reported:
        chat.apply(on_fan_out_finished(pending, pending.request_id, pending.targets))
    if resumed:
        chat.apply(resume_fan_out(_as_pending(chat.state), T0 + 3_000, w))
    chat.apply(on_timer(_as_pending(chat.state), T0 + 10_000, w))  # the reminder's time, if any
    pending = _as_pending(chat.state)
    match ending:
        case "join":
            chat.apply(on_chat_event(pending, joined(at_ms=T0 + 20_000), T0 + 20_000, w))
        case "end":
            chat.apply(on_chat_event(pending, ended(at_ms=T0 + 20_000), T0 + 20_000, w))
        case _:
            chat.apply(on_timer(pending, pending.deadline_ms, w))

    assert any(push.kind is PushKind.HANDOFF_REQUESTED for push in chat.pushes), "the round pushed nobody"
    assert any(push.kind is PushKind.HANDOFF_CLOSED for push in chat.pushes)
    for push in chat.pushes:  # title, body, loc args, data, public texts: every field
        assert visitor_name not in repr(push), push.kind
    known_from = 0 if site_known_at_start else 1  # before its site arrived, the round could not know
    for state in chat.states[known_from:]:
        assert visitor_name not in repr(state)


def _as_pending(state: ChatState | None) -> PendingRound:
    assert isinstance(state, PendingRound)
    return state
