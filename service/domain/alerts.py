"""The pushes a round sends: the alert while its deadline is ahead, to the devices eligible now,
and the closing update when it closes, to the devices that may show the alert.

A push is built once per round as a template and copied per device (`address`), so every device
gets the same words and collapse id, and a device that is gone or whose token died meanwhile is
skipped rather than pushed.
"""

from __future__ import annotations

from dataclasses import replace

from service.domain.effects import AddressedPush, SendPushes
from service.domain.events import SiteSnapshot
from service.domain.messages import alert_body, alert_title
from service.domain.push import Provider, Push, PushKind
from service.domain.rounds import DeviceRef, Outcome, PendingRound
from service.domain.world import World


def alert_template(round_: PendingRound, site: SiteSnapshot) -> Push:
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
    their alerts; the round unchanged and none when there are no such devices. The caller checks
    that the deadline is ahead."""
    chosen = set(state.targets)
    added = tuple(ref for ref in eligible if ref not in chosen)
    if not added:
        return state, ()
    round_ = state.with_targets_added(added)
    return round_, address(alert_template(round_, site), added, world)


def closing_updates(
    state: PendingRound, outcome: Outcome, now_ms: int, world: World
) -> tuple[AddressedPush, ...]:
    """The update that replaces the alert on every device that may show it, once the round closed
    (none when the policy turns closing updates off)."""
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
    return address(template, state.may_show, world)
