"""The decisions: what a chat event, a timer, a fan-out report or a directory change does to a
chat's state — the core's entry points, called by the shell once per input.

Each function takes the chat's current state (or None), the input and `now_ms`, reads the
directories (`World`), and returns the effects to execute. None of them mutates anything. How a
round's pushes are built is in `alerts.py`, how a round closes or is missed in `closing.py`.

Rules (issues #2 and #10):
- Event times are claims. The time that counts for an event is never later than when it reached
  Kafka or the worker (`arrived_ms`): a join stamped after the deadline by a fast clock but read
  before it accepts the chat; a request stamped in the future starts its wait on arrival.
- `handoff_requested` starts a round unless one is pending, the same request was already seen
  (same CloudEvents id, or the closed round's `requested_at` re-sent under a new id), or it was
  made at or before the chat's last join or end (the services raced; the chat was served).
  The deadline is that time plus the time to accept. A request for a site not in the directory
  (the sites feed may lag) still starts a round with the default time to accept; agents are
  pushed if the site arrives before the deadline.
- Devices are pushed only while the deadline is ahead, including agents who become eligible
  during the round.
- `agent_joined` / `ended` close a pending round; at the deadline with neither, the round is
  missed: exactly one Missed event, and one chatbot message unless the deadline passed more than
  `chatbot_max_delay` ago (then the Missed is marked late: nobody reads a chat that old).
- A join or end that really came after the deadline comes too late: the round was missed first.
- Issue #12: a site with `reminder_after_seconds` shorter than the round's time to accept gets one
  reminder, at that time if the round is still pending, to the phones that may show the alert
  (`reminders.py`: at most one per round, also across restarts).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import assert_never

from service.domain.alerts import address, alert_template, eligible_refs, newly_eligible, send_alerts
from service.domain.closing import close, miss, remember
from service.domain.effects import (
    Effect,
    EmitTokenRejected,
    ForgetChat,
    Ignored,
    IgnoredWhy,
    Noted,
    NoteWhy,
    PutState,
    ScheduleTimer,
)
from service.domain.events import (
    AgentJoined,
    ChatEnded,
    ChatEvent,
    HandoffRequested,
    SiteSnapshot,
    TokenRejection,
)
from service.domain.reminders import remind, reminder_at_ms, reminder_due
from service.domain.rounds import (
    ChatState,
    ClosedRound,
    DeviceRef,
    Outcome,
    PendingRound,
    RoundExtras,
    extras_or_none,
    timer_due_ms,
)
from service.domain.world import Policy, World

__all__ = [
    "Policy",
    "World",
    "on_chat_event",
    "on_eligibility_changed",
    "on_fan_out_finished",
    "on_timer",
    "on_token_rejected",
    "resume_fan_out",
]


def on_chat_event(
    state: ChatState | None, event: ChatEvent, now_ms: int, world: World, arrived_ms: int | None = None
) -> list[Effect]:
    """`arrived_ms`: when the record reached Kafka (the broker's append time) or, if unknown,
    the worker (default: `now_ms`). The event's own time counts only where it is earlier."""
    arrived = now_ms if arrived_ms is None else min(arrived_ms, now_ms)
    match event:
        case HandoffRequested():
            return _on_request(state, event, min(event.requested_at_ms, arrived), now_ms, world)
        case AgentJoined():
            claimed_ms, outcome = event.joined_at_ms, Outcome.ACCEPTED
        case ChatEnded():
            claimed_ms, outcome = event.ended_at_ms, Outcome.ENDED
        case _:
            assert_never(event)
    at_ms = min(claimed_ms, arrived)
    if isinstance(state, PendingRound):
        if at_ms > state.deadline_ms:
            # The round expired before this join/end happened: it is missed, and the late join
            # (agents may join missed chats) produces nothing more.
            return miss(state, now_ms, world, last_event_ms=at_ms)
        joiner = event.agent_id if isinstance(event, AgentJoined) else None
        return close(state, outcome, now_ms, world, last_event_ms=at_ms, agent_id=joiner)
    return [
        Ignored(event.chat_id, IgnoredWhy.NO_PENDING_ROUND),
        *remember(state, event, outcome, at_ms, now_ms, world),
    ]


def on_timer(state: ChatState | None, now_ms: int, world: World) -> list[Effect]:
    """A timer for this chat is due. Timers are never cancelled, so stale ones are ignored."""
    if isinstance(state, PendingRound) and state.deadline_ms <= now_ms:
        return miss(state, now_ms, world)
    if isinstance(state, PendingRound) and reminder_due(state, now_ms):
        return remind(state, now_ms, world)
    if isinstance(state, ClosedRound) and state.forget_at_ms <= now_ms:
        return [ForgetChat(state.chat_id)]
    return []


def on_fan_out_finished(
    state: ChatState | None,
    request_id: str,
    delivered: tuple[DeviceRef, ...],
    covered: tuple[DeviceRef, ...] | None = None,
    unsure: tuple[DeviceRef, ...] = (),
    rejected: tuple[DeviceRef, ...] = (),
    failed: tuple[DeviceRef, ...] = (),
) -> list[Effect]:
    """Record what came of the request per device, so the Missed report and closing updates are
    exact. `covered`: the devices the fan-out pushed (default: every target)."""
    if not isinstance(state, PendingRound) or state.request_id != request_id:
        return []
    covered_refs = state.targets if covered is None else covered
    reported = state.with_report(covered_refs, delivered, unsure, rejected, failed)
    return [] if reported == state else [PutState(reported)]


def on_token_rejected(rejection: TokenRejection, now_ms: int) -> list[Effect]:
    event_id = f"token_rejected:{rejection.agent_id}:{rejection.device_id}:{rejection.token_fingerprint}"
    return [
        EmitTokenRejected(
            event_id, rejection.agent_id, rejection.device_id, rejection.provider, rejection.reason, now_ms
        )
    ]


def on_eligibility_changed(
    site_id: str, rounds: Iterable[PendingRound], now_ms: int, world: World
) -> list[Effect]:
    """The directory changed for a site (its snapshot arrived, or an agent of its account
    changed): its pending `rounds` push the devices that became eligible, while their deadline is
    ahead. The site's eligible devices are worked out once for all its rounds."""
    site = world.sites.get(site_id)
    if site is None:
        return []
    eligible: tuple[DeviceRef, ...] | None = None
    effects: list[Effect] = []
    for state in rounds:
        if state.deadline_ms <= now_ms:
            continue
        if eligible is None:
            eligible = eligible_refs(site, world)
        round_, pushes = newly_eligible(state, site, eligible, world)
        if pushes:
            effects += [PutState(round_), send_alerts(round_, pushes)]
        elif round_ is not state:  # the visitor's name let go (a site that hides it)
            effects.append(PutState(round_))
    return effects


def resume_fan_out(state: PendingRound, now_ms: int, world: World) -> list[Effect]:
    """After a restore, if the deadline is ahead: push again the devices whose fan-out a crash
    interrupted and those that became eligible meanwhile, by eligibility as it is now (an agent
    who switched availability off since is not pushed). Returns the round to keep in memory
    (not written: the fan-out's report writes it) and the pushes."""
    site = world.sites.get(state.site_id)
    if site is None or state.deadline_ms <= now_ms:
        return []
    eligible = eligible_refs(site, world)
    awaited = set(state.awaited)
    again = tuple(ref for ref in eligible if ref in awaited)
    round_, added = newly_eligible(state, site, eligible, world)
    pushes = address(alert_template(round_, site), again, world) + added
    if not pushes:
        return []
    return [PutState(round_), send_alerts(round_, pushes)]


def _on_request(
    state: ChatState | None, event: HandoffRequested, requested_at_ms: int, now_ms: int, world: World
) -> list[Effect]:
    """`requested_at_ms`: the request's trusted time (its claim, or its arrival if earlier)."""
    if state is not None and state.request_id == event.event_id:
        return [Ignored(event.chat_id, IgnoredWhy.DUPLICATE_REQUEST)]
    if isinstance(state, PendingRound):
        return [Ignored(event.chat_id, IgnoredWhy.ROUND_ALREADY_PENDING)]
    if isinstance(state, ClosedRound) and state.supersedes(event.requested_at_ms, requested_at_ms):
        return [Ignored(event.chat_id, IgnoredWhy.STALE_REQUEST)]
    site = world.sites.get(event.site_id)
    policy = world.policy
    site_time_to_accept_s = site.time_to_accept_s if site is not None else None
    time_to_accept_s = event.time_to_accept_s or site_time_to_accept_s or policy.default_time_to_accept_s
    deadline_ms = requested_at_ms + time_to_accept_s * 1000
    in_time = deadline_ms > now_ms
    refs = eligible_refs(site, world) if in_time and site is not None else ()
    round_ = PendingRound(
        request_id=event.event_id,
        chat_id=event.chat_id,
        site_id=event.site_id,
        requested_at_ms=requested_at_ms,
        deadline_ms=deadline_ms,
        targets=refs,
        delivered=None if refs else (),
        visitor_name=_kept_visitor_name(event, site, refs, in_time=in_time),
        extras=extras_or_none(
            RoundExtras(
                claimed_at_ms=-1 if event.requested_at_ms == requested_at_ms else event.requested_at_ms,
                expired_on_arrival=not in_time,
                reminder_at_ms=reminder_at_ms(site, requested_at_ms, deadline_ms, now_ms),
            )
        ),
    )
    # One timer per round at a time: the reminder's when one is due, which then arms the deadline's.
    effects: list[Effect] = [PutState(round_), ScheduleTimer(event.chat_id, timer_due_ms(round_))]
    if site is None:
        effects.append(Noted(NoteWhy.SITE_UNKNOWN, event.chat_id, event.site_id))
    elif refs:
        effects.append(send_alerts(round_, address(alert_template(round_, site), refs, world)))
    return effects


def _kept_visitor_name(
    event: HandoffRequested, site: SiteSnapshot | None, refs: tuple[DeviceRef, ...], *, in_time: bool
) -> str | None:
    """The name a new round keeps, only while it may still word an alert: pushes to go, or a site
    yet to arrive. Never for a site that hides it (`hide_visitor_name`)."""
    if site is None:
        return event.visitor_name if in_time else None
    return event.visitor_name if refs and not site.hide_visitor_name else None
