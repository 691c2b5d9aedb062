"""The decisions: what a chat event, a timer or a fan-out report does to a chat's state.

Each function takes the chat's current state (or None), the input and `now_ms`, reads the
directories, and returns the effects to execute. None of them mutates anything.

Rules (issue #2):
- `handoff_requested` starts a round unless one is pending or this request was already seen;
  the deadline is event time (`requested_at`) plus the time to accept.
- Devices are pushed only while the deadline is ahead.
- `agent_joined` / `ended` close a pending round; at the deadline with neither, the round is
  missed: exactly one Missed event and one chatbot message.
- A join or end whose event time is past the deadline comes too late: the round was missed
  first (event time decides, not the order in which a lagging worker reads).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    PutState,
    Rejected,
    RoundClosed,
    ScheduleTimer,
    SendPushes,
)
from service.domain.events import AgentJoined, ChatEvent, HandoffRequested, SiteSnapshot, TokenRejection
from service.domain.messages import alert_body, alert_title, missed_message_text
from service.domain.rounds import ChatState, ClosedRound, DeviceRef, Outcome, PendingRound
from service.push.base import Provider, Push, PushKind


@dataclass(frozen=True, slots=True)
class Policy:
    default_time_to_accept_s: int = 120
    dedup_window_ms: int = 3_600_000
    """How long a closed round is remembered to swallow a redelivered request."""
    closing_updates: bool = True
    closing_update_ttl_ms: int = 600_000


@dataclass(frozen=True, slots=True)
class World:
    """What a decision may read besides the chat's own state."""

    sites: SiteDirectory
    agents: AgentDirectory
    policy: Policy


def on_chat_event(state: ChatState | None, event: ChatEvent, now_ms: int, world: World) -> list[Effect]:
    if isinstance(event, HandoffRequested):
        return _on_request(state, event, now_ms, world)
    at_ms = event.joined_at_ms if isinstance(event, AgentJoined) else event.ended_at_ms
    outcome = Outcome.ACCEPTED if isinstance(event, AgentJoined) else Outcome.ENDED
    if not isinstance(state, PendingRound):
        return [Ignored(event.chat_id, IgnoredWhy.NO_PENDING_ROUND)]
    if at_ms > state.deadline_ms:
        # The round expired before this join/end happened: it is missed, and the late join
        # (agents may join missed chats) produces nothing more.
        return _miss(state, now_ms, world)
    return _close(state, outcome, now_ms, world)


def on_timer(state: ChatState | None, now_ms: int, world: World) -> list[Effect]:
    """A timer for this chat is due. Timers are never cancelled, so stale ones are ignored."""
    if isinstance(state, PendingRound) and state.deadline_ms <= now_ms:
        return _miss(state, now_ms, world)
    if isinstance(state, ClosedRound) and state.forget_at_ms <= now_ms:
        return [ForgetChat(state.chat_id)]
    return []


def on_fan_out_finished(
    state: ChatState | None, request_id: str, delivered: tuple[DeviceRef, ...]
) -> list[Effect]:
    """Record who got the request, so the Missed report and closing updates are exact."""
    if isinstance(state, PendingRound) and state.request_id == request_id and state.delivered is None:
        return [PutState(state.with_delivered(delivered))]
    return []


def on_token_rejected(rejection: TokenRejection, now_ms: int) -> list[Effect]:
    event_id = f"token_rejected:{rejection.agent_id}:{rejection.device_id}:{rejection.token_fingerprint}"
    return [
        EmitTokenRejected(
            event_id, rejection.agent_id, rejection.device_id, rejection.provider, rejection.reason, now_ms
        )
    ]


def resume_fan_out(state: PendingRound, now_ms: int, world: World) -> list[Effect]:
    """After a restore: push again a round whose fan-out did not finish, if still in time."""
    site = world.sites.get(state.site_id)
    if state.delivered is not None or site is None or state.deadline_ms <= now_ms:
        return []
    pushes = _alerts(state, site, world)
    return [SendPushes(state.chat_id, state.request_id, state.requested_at_ms, pushes, report_delivery=True)]


def _on_request(state: ChatState | None, event: HandoffRequested, now_ms: int, world: World) -> list[Effect]:
    # Order matters: a redelivered request is a duplicate whatever has happened since; a request
    # naming an unknown site is bad data (dead-lettered) even while another round is pending.
    if state is not None and state.request_id == event.event_id:
        return [Ignored(event.chat_id, IgnoredWhy.DUPLICATE_REQUEST)]
    site = world.sites.get(event.site_id)
    if site is None:
        return [Rejected("unknown_site", f"site {event.site_id!r} is not in the sites directory")]
    if isinstance(state, PendingRound):
        return [Ignored(event.chat_id, IgnoredWhy.ROUND_ALREADY_PENDING)]
    policy = world.policy
    time_to_accept_s = event.time_to_accept_s or site.time_to_accept_s or policy.default_time_to_accept_s
    deadline_ms = event.requested_at_ms + time_to_accept_s * 1000
    in_time = deadline_ms > now_ms
    targets = world.agents.eligible_targets(site) if in_time else ()
    refs = tuple(DeviceRef(target.agent_id, target.device.device_id) for target in targets)
    round_ = PendingRound(
        request_id=event.event_id,
        chat_id=event.chat_id,
        site_id=event.site_id,
        requested_at_ms=event.requested_at_ms,
        deadline_ms=deadline_ms,
        targets=refs,
        delivered=None if refs else (),
        visitor_name=event.visitor_name,
    )
    effects: list[Effect] = [PutState(round_), ScheduleTimer(event.chat_id, deadline_ms)]
    if refs:
        pushes = _alerts(round_, site, world)
        effects.append(
            SendPushes(event.chat_id, event.event_id, event.requested_at_ms, pushes, report_delivery=True)
        )
    return effects


def _alerts(round_: PendingRound, site: SiteSnapshot, world: World) -> tuple[AddressedPush, ...]:
    data = {
        "type": PushKind.HANDOFF_REQUESTED.value,
        "chat_id": round_.chat_id,
        "site_id": round_.site_id,
        "open_tab": "active",
    }
    template = Push(
        provider=Provider.FCM,
        token="",
        kind=PushKind.HANDOFF_REQUESTED,
        collapse_id=round_.chat_id,
        expires_at_ms=round_.deadline_ms,
        data=data,
        title=alert_title(site),
        body=alert_body(round_.visitor_name),
    )
    return _address(template, round_.targets, world)


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
    state: PendingRound, outcome: Outcome, now_ms: int, world: World, lateness_ms: int = 0
) -> list[Effect]:
    closed = ClosedRound(
        request_id=state.request_id,
        chat_id=state.chat_id,
        outcome=outcome,
        closed_at_ms=now_ms,
        forget_at_ms=now_ms + world.policy.dedup_window_ms,
    )
    effects: list[Effect] = [
        PutState(closed),
        ScheduleTimer(state.chat_id, closed.forget_at_ms),
        RoundClosed(state.chat_id, state.site_id, outcome, lateness_ms),
    ]
    updates = _closing_updates(state, outcome, now_ms, world)
    if updates:
        effects.append(
            SendPushes(state.chat_id, state.request_id, state.requested_at_ms, updates, report_delivery=False)
        )
    return effects


def _miss(state: PendingRound, now_ms: int, world: World) -> list[Effect]:
    notified = state.notified
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
        )
    ]
    site = world.sites.last_known(state.site_id)
    if site is not None:
        effects.append(
            EmitChatbotMessage(
                event_id=f"{state.request_id}:chatbot",
                chat_id=state.chat_id,
                site_id=state.site_id,
                text=missed_message_text(site),
                contact_email=site.contact_email,
                contact_phone=site.contact_phone,
                sent_at_ms=now_ms,
            )
        )
    else:
        effects.append(Rejected("unknown_site", f"site {state.site_id!r} was deleted before the deadline"))
    lateness_ms = max(0, now_ms - state.deadline_ms)
    return effects + _close(state, Outcome.MISSED, now_ms, world, lateness_ms)


def _closing_updates(
    state: PendingRound, outcome: Outcome, now_ms: int, world: World
) -> tuple[AddressedPush, ...]:
    if not world.policy.closing_updates:
        return ()
    data = {
        "type": PushKind.HANDOFF_CLOSED.value,
        "chat_id": state.chat_id,
        "site_id": state.site_id,
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
    return _address(template, state.notified, world)
