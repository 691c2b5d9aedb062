"""The pushes a round sends: the alert while its deadline is ahead, to the devices eligible now,
and the closing update when it closes, to the devices that may show the alert.

A push is built once per round as a template and copied per device (`address`), so every device
gets the same words and collapse id, and a device that is gone or whose token died meanwhile is
skipped rather than pushed.
"""

from __future__ import annotations

from dataclasses import replace

import msgspec

from service.domain.effects import AddressedPush, SendPushes
from service.domain.events import SiteSnapshot
from service.domain.messages import alert_texts, closing_texts
from service.domain.push import Provider, Push, PushKind
from service.domain.rounds import DeviceRef, Outcome, PendingRound
from service.domain.world import World


def alert_template(round_: PendingRound, site: SiteSnapshot) -> Push:
    """The alert, worded by `messages.alert_texts`: never the visitor's name for a site that
    hides it, and a lock-screen version without it whenever the alert names the visitor."""
    texts = alert_texts(site, round_.visitor_name)
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
        title=texts.title,
        body=texts.body,
        title_loc=texts.title_loc,
        body_loc=texts.body_loc,
        public_title=texts.public_title,
        public_body=texts.public_body,
    )


def address(template: Push, refs: tuple[DeviceRef, ...], world: World) -> tuple[AddressedPush, ...]:
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


def send_alerts(round_: PendingRound, pushes: tuple[AddressedPush, ...]) -> SendPushes:
    """Alerts ask for a delivery report: the round records who got them (`on_fan_out_finished`)."""
    return SendPushes(round_.chat_id, round_.request_id, round_.requested_at_ms, pushes, report_delivery=True)


def eligible_refs(site: SiteSnapshot, world: World) -> tuple[DeviceRef, ...]:
    """The devices a push for `site` goes to now (`AgentDirectory.eligible_targets`), as a round
    records them."""
    return tuple(
        DeviceRef(target.agent_id, target.device.device_id) for target in world.agents.eligible_targets(site)
    )


def newly_eligible(
    state: PendingRound, site: SiteSnapshot, eligible: tuple[DeviceRef, ...], world: World
) -> tuple[PendingRound, tuple[AddressedPush, ...]]:
    """The round with the `eligible` devices it has not chosen yet added to its targets, and
    their alerts; none when there are no such devices (the round is then unchanged, but for the
    visitor's name, dropped when the site hides it). The caller checks that the deadline is ahead."""
    if site.hide_visitor_name and state.visitor_name is not None:
        # The round started before its site was known: the name it kept is let go now.
        state = msgspec.structs.replace(state, visitor_name=None)
    chosen = set(state.targets)
    added = tuple(ref for ref in eligible if ref not in chosen)
    if not added:
        return state, ()
    round_ = state.with_targets_added(added)
    return round_, address(alert_template(round_, site), added, world)


def closing_updates(
    state: PendingRound, outcome: Outcome, now_ms: int, world: World, agent_id: str | None = None
) -> tuple[AddressedPush, ...]:
    """The update that replaces the alert on every device that may show it, once the round closed
    (none when the policy turns closing updates off). It states the outcome (`closing_texts`)
    and, for an accepted chat, names who took it: `agent_id` (the joining agent) and, when the
    agents directory has one, the agent's `display_name`. It never names the visitor."""
    if not world.policy.closing_updates:
        return ()
    data = {
        "type": PushKind.HANDOFF_CLOSED.value,
        "chat_id": state.chat_id,
        "site_id": state.site_id,
        "request_id": state.request_id,
        "outcome": outcome.value,
    }
    agent_name = None
    if outcome is Outcome.ACCEPTED and agent_id:
        agent = world.agents.get(agent_id)
        agent_name = agent.display_name if agent is not None else None
        data["agent_id"] = agent_id
        if agent_name:
            data["agent_name"] = agent_name
    texts = closing_texts(world.sites.last_known(state.site_id), outcome, agent_name)
    template = Push(
        provider=Provider.FCM,
        token="",
        kind=PushKind.HANDOFF_CLOSED,
        collapse_id=state.chat_id,
        expires_at_ms=now_ms + world.policy.closing_update_ttl_ms,
        data=data,
        title=texts.title,
        body=texts.body,
        title_loc=texts.title_loc,
        body_loc=texts.body_loc,
    )
    return address(template, state.may_show, world)
