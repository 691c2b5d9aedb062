"""How a round ends, and what the chat remembers after: a join or end closes it, its deadline
misses it (one Missed report, and one chatbot message unless the miss is reported too late for a
visitor to still read it), and either way the chat keeps a `ClosedRound` for the de-duplication
window so that a redelivered or racing request starts nothing.
"""

from __future__ import annotations

import msgspec

from service.domain.alerts import closing_updates
from service.domain.effects import (
    Effect,
    EmitChatbotMessage,
    EmitMissed,
    MissedWhen,
    Noted,
    NoteWhy,
    PutState,
    RoundClosed,
    ScheduleTimer,
    SendPushes,
)
from service.domain.events import ChatEvent
from service.domain.messages import missed_message_text
from service.domain.notified import who_was_notified
from service.domain.rounds import ClosedRound, Outcome, PendingRound
from service.domain.world import World


def close(
    state: PendingRound,
    outcome: Outcome,
    now_ms: int,
    world: World,
    lateness_ms: int = 0,
    last_event_ms: int = -1,
    missed_when: MissedWhen | None = None,
    agent_id: str | None = None,
) -> list[Effect]:
    """`agent_id`: the agent whose join accepted the chat (the closing update names them)."""
    closed = ClosedRound(
        request_id=state.request_id,
        chat_id=state.chat_id,
        outcome=outcome,
        closed_at_ms=now_ms,
        forget_at_ms=now_ms + world.policy.dedup_window_ms,
        request_claim_ms=state.request_claim_ms,
        last_event_ms=last_event_ms,
    )
    effects: list[Effect] = [
        PutState(closed),
        ScheduleTimer(state.chat_id, closed.forget_at_ms),
        RoundClosed(
            state.chat_id,
            state.site_id,
            outcome,
            lateness_ms,
            missed_when,
            accepted_after_ms=_accepted_after_ms(state, outcome, last_event_ms),
            unreachable=state.reached_nobody and not state.expired_on_arrival,
        ),
    ]
    updates = closing_updates(state, outcome, now_ms, world, agent_id)
    if updates:
        # No delivery report: nothing is decided on who got a closing update.
        effects.append(
            SendPushes(state.chat_id, state.request_id, state.requested_at_ms, updates, report_delivery=False)
        )
    return effects


def _accepted_after_ms(state: PendingRound, outcome: Outcome, joined_at_ms: int) -> int:
    """From the request to the join that accepted it, both as trusted (clocks may disagree: never
    below 0); -1 for a round not accepted."""
    if outcome is not Outcome.ACCEPTED or joined_at_ms == -1:
        return -1
    return max(0, joined_at_ms - state.requested_at_ms)


def miss(state: PendingRound, now_ms: int, world: World, last_event_ms: int = -1) -> list[Effect]:
    notified = state.notified
    lateness_ms = max(0, now_ms - state.deadline_ms)
    late = lateness_ms > world.policy.chatbot_max_delay_ms
    if state.expired_on_arrival:
        when = MissedWhen.EXPIRED_ON_ARRIVAL
    else:
        when = MissedWhen.LATE if late else MissedWhen.IN_TIME
    effects: list[Effect] = [
        EmitMissed(
            event_id=f"{state.request_id}:missed",
            chat_id=state.chat_id,
            site_id=state.site_id,
            requested_at_ms=state.requested_at_ms,
            deadline_ms=state.deadline_ms,
            missed_at_ms=now_ms,
            agents_notified=len({ref.agent_id for ref in notified}),
            devices_notified=len(notified),
            late=late,
            expired_on_arrival=state.expired_on_arrival,
            notified=who_was_notified(state),
        )
    ]
    site = world.sites.last_known(state.site_id)
    if late:
        effects.append(Noted(NoteWhy.MISSED_WITHOUT_CHATBOT, state.chat_id, state.site_id))
    else:
        if site is None:
            effects.append(Noted(NoteWhy.MISSED_WITHOUT_SITE, state.chat_id, state.site_id))
        effects.append(
            EmitChatbotMessage(
                event_id=f"{state.request_id}:chatbot",
                chat_id=state.chat_id,
                site_id=state.site_id,
                text=missed_message_text(site),
                contact_email=site.contact_email if site is not None else None,
                contact_phone=site.contact_phone if site is not None else None,
                sent_at_ms=now_ms,
            )
        )
    return effects + close(state, Outcome.MISSED, now_ms, world, lateness_ms, last_event_ms, when)


def remember(
    state: ClosedRound | None, event: ChatEvent, outcome: Outcome, at_ms: int, now_ms: int, world: World
) -> list[Effect]:
    """Remember a join or end without a pending round for the de-duplication window, so that a
    request for the same chat read after it (services race) starts nothing."""
    if state is not None and at_ms <= state.last_event_ms:
        return []
    forget_at_ms = now_ms + world.policy.dedup_window_ms
    if state is None:
        memory = ClosedRound("", event.chat_id, outcome, now_ms, forget_at_ms, last_event_ms=at_ms)
    else:
        memory = msgspec.structs.replace(state, forget_at_ms=forget_at_ms, last_event_ms=at_ms)
    return [PutState(memory), ScheduleTimer(event.chat_id, forget_at_ms)]
