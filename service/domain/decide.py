"""The decisions: what a chat event, a timer or a fan-out report does to a chat's state.

Each function takes the chat's current state (or None), the input and `now_ms`, reads the
directories, and returns the effects to execute. None of them mutates anything.

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
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import msgspec

from service.domain.directory import AgentDirectory, SiteDirectory
from service.domain.effects import (
    AddressedPush,
    Effect,
    EmitChatbotMessage,
    EmitMissed,
    EmitTokenRejected,
    ForgetChat,
    Ignored,
    IgnoredWhy,
    MissedWhen,
    Noted,
    NoteWhy,
    PutState,
    RoundClosed,
    ScheduleTimer,
    SendPushes,
)
from service.domain.events import AgentJoined, ChatEvent, HandoffRequested, SiteSnapshot, TokenRejection
from service.domain.messages import alert_body, alert_title, missed_message_text
from service.domain.push import Provider, Push, PushKind
from service.domain.rounds import ChatState, ClosedRound, DeviceRef, Outcome, PendingRound


@dataclass(frozen=True, slots=True)
class Policy:
    default_time_to_accept_s: int = 120
    dedup_window_ms: int = 3_600_000
    """How long a closed round is remembered to swallow a redelivered request."""
    closing_updates: bool = True
    closing_update_ttl_ms: int = 600_000
    chatbot_max_delay_ms: int = 300_000
    """A round reported missed later than this after its deadline gets no chatbot message."""


@dataclass(frozen=True, slots=True)
class World:
    """What a decision may read besides the chat's own state."""

    sites: SiteDirectory
    agents: AgentDirectory
    policy: Policy


def on_chat_event(
    state: ChatState | None, event: ChatEvent, now_ms: int, world: World, arrived_ms: int | None = None
) -> list[Effect]:
    """`arrived_ms`: when the record reached Kafka (the broker's append time) or, if unknown,
    the worker (default: `now_ms`). The event's own time counts only where it is earlier."""
    arrived = now_ms if arrived_ms is None else min(arrived_ms, now_ms)
    if isinstance(event, HandoffRequested):
        return _on_request(state, event, min(event.requested_at_ms, arrived), now_ms, world)
    claimed_ms = event.joined_at_ms if isinstance(event, AgentJoined) else event.ended_at_ms
    at_ms = min(claimed_ms, arrived)
    outcome = Outcome.ACCEPTED if isinstance(event, AgentJoined) else Outcome.ENDED
    if isinstance(state, PendingRound):
        if at_ms > state.deadline_ms:
            # The round expired before this join/end happened: it is missed, and the late join
            # (agents may join missed chats) produces nothing more.
            return _miss(state, now_ms, world, last_event_ms=at_ms)
        return _close(state, outcome, now_ms, world, last_event_ms=at_ms)
    return [
        Ignored(event.chat_id, IgnoredWhy.NO_PENDING_ROUND),
        *_remember(state, event, outcome, at_ms, now_ms, world),
    ]


def _remember(
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


def on_timer(state: ChatState | None, now_ms: int, world: World) -> list[Effect]:
    """A timer for this chat is due. Timers are never cancelled, so stale ones are ignored."""
    if isinstance(state, PendingRound) and state.deadline_ms <= now_ms:
        return _miss(state, now_ms, world)
    if isinstance(state, ClosedRound) and state.forget_at_ms <= now_ms:
        return [ForgetChat(state.chat_id)]
    return []


def on_fan_out_finished(
    state: ChatState | None,
    request_id: str,
    delivered: tuple[DeviceRef, ...],
    covered: tuple[DeviceRef, ...] | None = None,
    unsure: tuple[DeviceRef, ...] = (),
) -> list[Effect]:
    """Record who got the request, so the Missed report and closing updates are exact.
    `covered`: the devices the fan-out pushed (default: every target)."""
    if not isinstance(state, PendingRound) or state.request_id != request_id:
        return []
    reported = state.with_report(state.targets if covered is None else covered, delivered, unsure)
    return [] if reported == state else [PutState(reported)]


def on_token_rejected(rejection: TokenRejection, now_ms: int) -> list[Effect]:
    event_id = f"token_rejected:{rejection.agent_id}:{rejection.device_id}:{rejection.token_fingerprint}"
    return [
        EmitTokenRejected(
            event_id, rejection.agent_id, rejection.device_id, rejection.provider, rejection.reason, now_ms
        )
    ]


def on_eligibility_changed(state: PendingRound, now_ms: int, world: World) -> list[Effect]:
    """The directory changed for this round's site (its snapshot arrived, or an agent of its
    account changed): push the devices that became eligible, while the deadline is ahead."""
    round_, pushes = _newly_eligible(state, now_ms, world)
    if not pushes:
        return []
    return [PutState(round_), _send_alerts(round_, pushes)]


def resume_fan_out(state: PendingRound, now_ms: int, world: World) -> list[Effect]:
    """After a restore, if the deadline is ahead: push again the devices whose fan-out a crash
    interrupted and those that became eligible meanwhile, by eligibility as it is now (an agent
    who switched availability off since is not pushed). Returns the round to keep in memory
    (not written: the fan-out's report writes it) and the pushes."""
    site = world.sites.get(state.site_id)
    if site is None or state.deadline_ms <= now_ms:
        return []
    awaited = set(state.awaited)
    refs = [
        ref
        for target in world.agents.eligible_targets(site)
        if (ref := DeviceRef(target.agent_id, target.device.device_id)) in awaited
    ]
    round_, added = _newly_eligible(state, now_ms, world)
    pushes = _address(_alert_template(round_, site), tuple(refs), world) + added
    if not pushes:
        return []
    return [PutState(round_), _send_alerts(round_, pushes)]


def _newly_eligible(
    state: PendingRound, now_ms: int, world: World
) -> tuple[PendingRound, tuple[AddressedPush, ...]]:
    site = world.sites.get(state.site_id)
    if site is None or state.deadline_ms <= now_ms:
        return state, ()
    chosen = set(state.targets)
    added = tuple(
        ref
        for target in world.agents.eligible_targets(site)
        if (ref := DeviceRef(target.agent_id, target.device.device_id)) not in chosen
    )
    if not added:
        return state, ()
    round_ = state.with_targets_added(added)
    return round_, _address(_alert_template(round_, site), added, world)


def _send_alerts(round_: PendingRound, pushes: tuple[AddressedPush, ...]) -> SendPushes:
    return SendPushes(round_.chat_id, round_.request_id, round_.requested_at_ms, pushes, report_delivery=True)


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
    targets = world.agents.eligible_targets(site) if in_time and site is not None else ()
    refs = tuple(DeviceRef(target.agent_id, target.device.device_id) for target in targets)
    round_ = PendingRound(
        request_id=event.event_id,
        chat_id=event.chat_id,
        site_id=event.site_id,
        requested_at_ms=requested_at_ms,
        deadline_ms=deadline_ms,
        targets=refs,
        delivered=None if refs else (),
        # Kept while it may still word an alert: pushes to go, or a site yet to arrive.
        visitor_name=event.visitor_name if refs or (site is None and in_time) else None,
        claimed_at_ms=-1 if event.requested_at_ms == requested_at_ms else event.requested_at_ms,
        expired_on_arrival=not in_time,
    )
    effects: list[Effect] = [PutState(round_), ScheduleTimer(event.chat_id, deadline_ms)]
    if site is None:
        effects.append(Noted(NoteWhy.SITE_UNKNOWN, event.chat_id, event.site_id))
    elif refs:
        effects.append(_send_alerts(round_, _address(_alert_template(round_, site), refs, world)))
    return effects


def _alert_template(round_: PendingRound, site: SiteSnapshot) -> Push:
    data = {
        "type": PushKind.HANDOFF_REQUESTED.value,
        "chat_id": round_.chat_id,
        "site_id": round_.site_id,
        "request_id": round_.request_id,
        "open_tab": "active",
    }
    return Push(
        provider=Provider.FCM,
        token="",
        kind=PushKind.HANDOFF_REQUESTED,
        collapse_id=round_.chat_id,
        expires_at_ms=round_.deadline_ms,
        data=data,
        title=alert_title(site),
        body=alert_body(round_.visitor_name),
    )


def _address(template: Push, refs: tuple[DeviceRef, ...], world: World) -> tuple[AddressedPush, ...]:
    """One copy of `template` per device still known and alive, addressed to it (the template's
    provider, token and APNs environment are placeholders, replaced per device)."""
    pushes: list[AddressedPush] = []
    for ref in refs:
        device = world.agents.device(ref.agent_id, ref.device_id)
        if device is not None:
            push = replace(
                template,
                provider=device.provider,
                token=device.token,
                apns_environment=device.apns_environment,
            )
            pushes.append(AddressedPush(ref, push))
    return tuple(pushes)


def _close(
    state: PendingRound,
    outcome: Outcome,
    now_ms: int,
    world: World,
    lateness_ms: int = 0,
    last_event_ms: int = -1,
    missed_when: MissedWhen | None = None,
) -> list[Effect]:
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
        RoundClosed(state.chat_id, state.site_id, outcome, lateness_ms, missed_when),
    ]
    updates = _closing_updates(state, outcome, now_ms, world)
    if updates:
        effects.append(
            SendPushes(state.chat_id, state.request_id, state.requested_at_ms, updates, report_delivery=False)
        )
    return effects


def _miss(state: PendingRound, now_ms: int, world: World, last_event_ms: int = -1) -> list[Effect]:
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
    return effects + _close(state, Outcome.MISSED, now_ms, world, lateness_ms, last_event_ms, when)


def _closing_updates(
    state: PendingRound, outcome: Outcome, now_ms: int, world: World
) -> tuple[AddressedPush, ...]:
    if not world.policy.closing_updates:
        return ()
    data = {
        "type": PushKind.HANDOFF_CLOSED.value,
        "chat_id": state.chat_id,
        "site_id": state.site_id,
        "request_id": state.request_id,
        "outcome": outcome.value,
    }
    template = Push(
        provider=Provider.FCM,
        token="",
        kind=PushKind.HANDOFF_CLOSED,
        collapse_id=state.chat_id,
        expires_at_ms=now_ms + world.policy.closing_update_ttl_ms,
        data=data,
    )
    return _address(template, state.may_show, world)
