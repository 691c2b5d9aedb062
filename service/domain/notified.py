"""Who a round paged and what came of it on each device: the `notified` list of the Missed report,
so the app's Missed section can show whose phone got the request and whose did not."""

from __future__ import annotations

from service.domain.effects import UNCONFIRMED, DeviceOutcome, NotifiedAgent, NotifiedDevice
from service.domain.rounds import DeviceRef, PendingRound


def who_was_notified(state: PendingRound) -> tuple[NotifiedAgent, ...]:
    """Every device the round chose, grouped per agent in the order they were chosen. A device
    delivered to counts as delivered even if another fan-out of the round failed it (a resumed
    fan-out after a crash pushes a device again); one whose push may have arrived (sent, answer
    lost) is `failed` with reason `unconfirmed`; one in no report list was still waiting."""
    delivered = set(state.delivered or ())
    unsure, rejected, failed = set(state.unsure), set(state.rejected), set(state.failed)
    per_agent: dict[str, list[NotifiedDevice]] = {}
    for ref in state.targets:
        per_agent.setdefault(ref.agent_id, []).append(_device(ref, delivered, unsure, rejected, failed))
    return tuple(NotifiedAgent(agent_id, tuple(devices)) for agent_id, devices in per_agent.items())


def _device(
    ref: DeviceRef,
    delivered: set[DeviceRef],
    unsure: set[DeviceRef],
    rejected: set[DeviceRef],
    failed: set[DeviceRef],
) -> NotifiedDevice:
    if ref in delivered:
        return NotifiedDevice(ref.device_id, DeviceOutcome.DELIVERED)
    if ref in unsure:
        return NotifiedDevice(ref.device_id, DeviceOutcome.FAILED, UNCONFIRMED)
    if ref in rejected:
        return NotifiedDevice(ref.device_id, DeviceOutcome.TOKEN_REJECTED)
    if ref in failed:
        return NotifiedDevice(ref.device_id, DeviceOutcome.FAILED)
    return NotifiedDevice(ref.device_id, DeviceOutcome.PENDING)
