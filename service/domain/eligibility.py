"""Why an agent would (not) be pushed for a site: the fan-out rule of `AgentDirectory.eligible_targets`,
spelled out per site with its reasons, for `livechat-notifier explain agent`.

Pure: it is given the agent's latest snapshot (or None), the sites it is asked about, and the token
rejections the worker reported for the agent's devices, and returns one `SiteVerdict` per site. A
rejection counts only when it is newer than the agent's snapshot: the worker forgets every rejection
of an agent when a newer snapshot of it arrives (the app registered again), so an older one tells
nothing about today's token. Tokens never enter a verdict — a device is named by id, provider and
APNs environment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from service.domain.events import AgentSnapshot, Device, SiteSnapshot
from service.domain.push import ApnsEnvironment, Provider


class NotPushedReason(StrEnum):
    """Why an agent's devices would not get a site's push requests. Several can hold at once."""

    AGENT_UNKNOWN = "agent_unknown"
    """No snapshot of the agent on the agents topic (never published, or deleted)."""
    SITE_UNKNOWN = "site_unknown"
    """No snapshot of the site on the sites topic: no round starts for it."""
    OTHER_ACCOUNT = "other_account"
    """The site belongs to another account than the agent."""
    AVAILABILITY_OFF = "availability_off"
    """The agent's Live Chat Availability is off."""
    TOGGLE_OFF = "toggle_off"
    """The agent turned push off for this site."""
    TOGGLE_ABSENT = "toggle_absent"
    """The agent's snapshot does not list this site at all (push is off unless turned on)."""
    NO_DEVICES = "no_devices"
    """The agent's snapshot lists no device."""
    TOKEN_REJECTED = "token_rejected"  # noqa: S105 -- a reason code, not a credential
    """Every device's token was rejected by its provider since the agent's snapshot."""


@dataclass(frozen=True, slots=True)
class KnownRejection:
    """A `livechat.push.token_rejected` event the worker emitted for one of the agent's devices."""

    device_id: str
    provider: Provider
    reason: str
    rejected_at_ms: int


@dataclass(frozen=True, slots=True)
class DeviceVerdict:
    """One device of the agent: pushed unless `rejection` is set. Never carries the token."""

    device_id: str
    provider: Provider
    apns_environment: ApnsEnvironment | None
    """None for FCM devices."""
    rejection: KnownRejection | None = None

    @property
    def pushed(self) -> bool:
        return self.rejection is None


@dataclass(frozen=True, slots=True)
class SiteVerdict:
    site_id: str
    site_name: str | None
    account_id: str | None
    """The site's account, None when the site is unknown."""
    reasons: tuple[NotPushedReason, ...]
    """Empty exactly when the agent would be pushed."""
    devices: tuple[DeviceVerdict, ...]
    """Every device of the agent, each with whether it would get the push."""

    @property
    def pushed(self) -> bool:
        return not self.reasons

    @property
    def pushed_devices(self) -> tuple[DeviceVerdict, ...]:
        return tuple(device for device in self.devices if device.pushed) if self.pushed else ()


@dataclass(frozen=True, slots=True)
class AgentExplanation:
    agent_id: str
    account_id: str | None
    """None when the agent is unknown."""
    sites: tuple[SiteVerdict, ...]
    ignored_rejections: tuple[KnownRejection, ...]
    """Rejections not newer than the agent's snapshot: the worker forgot them when it arrived."""

    @property
    def agent_known(self) -> bool:
        return self.account_id is not None


def explain_agent(
    agent_id: str,
    agent: AgentSnapshot | None,
    sites: Mapping[str, SiteSnapshot],
    *,
    snapshot_at_ms: int | None = None,
    rejections: Iterable[KnownRejection] = (),
    only_site_id: str | None = None,
) -> AgentExplanation:
    """Per site, whether `agent` would be pushed and, if not, why.

    `sites` may hold any sites; the verdicts cover the agent's account's sites and every site its
    snapshot has a toggle for (a toggle for an unknown or foreign site is reported, not hidden), or
    only `only_site_id` when given. `snapshot_at_ms` is the agent snapshot's record timestamp:
    only rejections after it count."""
    counted, ignored = _split_rejections(rejections, snapshot_at_ms)
    if agent is None:
        site_ids = [only_site_id] if only_site_id is not None else []
        verdicts = tuple(
            SiteVerdict(
                site_id,
                _name(sites.get(site_id)),
                _account(sites.get(site_id)),
                (NotPushedReason.AGENT_UNKNOWN,),
                (),
            )
            for site_id in site_ids
        )
        return AgentExplanation(agent_id, None, verdicts, ignored)
    if only_site_id is not None:
        site_ids = [only_site_id]
    else:
        own = {site.site_id for site in sites.values() if site.account_id == agent.account_id}
        site_ids = sorted(own | set(agent.push_enabled_by_site))
    devices = tuple(_device_verdict(device, counted.get(device.device_id)) for device in agent.devices)
    verdicts = tuple(site_verdict(agent, site_id, sites.get(site_id), devices) for site_id in site_ids)
    return AgentExplanation(agent_id, agent.account_id, verdicts, ignored)


def site_verdict(
    agent: AgentSnapshot, site_id: str, site: SiteSnapshot | None, devices: tuple[DeviceVerdict, ...]
) -> SiteVerdict:
    """The rule of `AgentDirectory.eligible_targets`, one clause per reason."""
    reasons: list[NotPushedReason] = []
    if site is None:
        reasons.append(NotPushedReason.SITE_UNKNOWN)
    elif site.account_id != agent.account_id:
        reasons.append(NotPushedReason.OTHER_ACCOUNT)
    if not agent.live_chat_available:
        reasons.append(NotPushedReason.AVAILABILITY_OFF)
    toggle = agent.push_enabled_by_site.get(site_id)
    if toggle is None:
        reasons.append(NotPushedReason.TOGGLE_ABSENT)
    elif not toggle:
        reasons.append(NotPushedReason.TOGGLE_OFF)
    if not devices:
        reasons.append(NotPushedReason.NO_DEVICES)
    elif not any(device.pushed for device in devices):
        reasons.append(NotPushedReason.TOKEN_REJECTED)
    return SiteVerdict(site_id, _name(site), _account(site), tuple(reasons), devices)


def _split_rejections(
    rejections: Iterable[KnownRejection], snapshot_at_ms: int | None
) -> tuple[dict[str, KnownRejection], tuple[KnownRejection, ...]]:
    """The latest counted rejection per device, and the ones the worker has forgotten."""
    counted: dict[str, KnownRejection] = {}
    ignored: list[KnownRejection] = []
    for rejection in sorted(rejections, key=lambda r: r.rejected_at_ms):
        if snapshot_at_ms is None or rejection.rejected_at_ms <= snapshot_at_ms:
            ignored.append(rejection)
        else:
            counted[rejection.device_id] = rejection
    return counted, tuple(ignored)


def _device_verdict(device: Device, rejection: KnownRejection | None) -> DeviceVerdict:
    environment = device.apns_environment if device.provider is Provider.APNS else None
    return DeviceVerdict(device.device_id, device.provider, environment, rejection)


def _name(site: SiteSnapshot | None) -> str | None:
    return site.name if site is not None else None


def _account(site: SiteSnapshot | None) -> str | None:
    return site.account_id if site is not None else None
