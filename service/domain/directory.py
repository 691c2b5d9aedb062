"""In-memory agent and site directories, rebuilt from their compacted topics at start-up.

The directories answer the one question fan-out asks — which devices may be pushed for a site —
and remember devices whose token a provider declared dead until a newer snapshot lists the
device again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from service.domain.events import AgentSnapshot, Device, SiteSnapshot


@dataclass(frozen=True, slots=True)
class Target:
    """One device of one agent, chosen to receive a push."""

    agent_id: str
    device: Device


def sites_gaining(agent: AgentSnapshot) -> tuple[str, ...]:
    """Sites for whose pending rounds this snapshot of an agent may bring eligible devices."""
    if not agent.live_chat_available or not agent.devices:
        return ()
    return tuple(site_id for site_id, enabled in agent.push_enabled_by_site.items() if enabled)


class SiteDirectory:
    def __init__(self) -> None:
        self._sites: dict[str, SiteSnapshot] = {}
        # Deleted sites' last snapshots: a round already running when its site was deleted still
        # owes the visitor the contact message. Few and small; a re-created site replaces them.
        self._retired: dict[str, SiteSnapshot] = {}

    def upsert(self, site: SiteSnapshot) -> None:
        self._sites[site.site_id] = site
        self._retired.pop(site.site_id, None)

    def remove(self, site_id: str) -> None:
        site = self._sites.pop(site_id, None)
        if site is not None:
            self._retired[site_id] = site

    def get(self, site_id: str) -> SiteSnapshot | None:
        """The live site (new rounds start only for these)."""
        return self._sites.get(site_id)

    def last_known(self, site_id: str) -> SiteSnapshot | None:
        """The live site, or the last snapshot of a deleted one (to close running rounds)."""
        return self._sites.get(site_id) or self._retired.get(site_id)

    def __len__(self) -> int:
        return len(self._sites)


class AgentDirectory:
    def __init__(self) -> None:
        self._agents: dict[str, AgentSnapshot] = {}
        self._agents_by_account: defaultdict[str, set[str]] = defaultdict(set)
        # agent_id -> {(device_id, token)} a provider rejected. A newer snapshot of the agent
        # clears them: the platform re-lists a device only after the app registered again.
        self._dead: dict[str, set[tuple[str, str]]] = {}

    def upsert(self, agent: AgentSnapshot) -> None:
        previous = self._agents.get(agent.agent_id)
        if previous is not None and previous.account_id != agent.account_id:
            self._agents_by_account[previous.account_id].discard(agent.agent_id)
        self._agents[agent.agent_id] = agent
        self._agents_by_account[agent.account_id].add(agent.agent_id)
        self._dead.pop(agent.agent_id, None)

    def remove(self, agent_id: str) -> None:
        previous = self._agents.pop(agent_id, None)
        if previous is not None:
            self._agents_by_account[previous.account_id].discard(agent_id)
        self._dead.pop(agent_id, None)

    def get(self, agent_id: str) -> AgentSnapshot | None:
        return self._agents.get(agent_id)

    def mark_token_dead(self, agent_id: str, device_id: str, token: str) -> None:
        self._dead.setdefault(agent_id, set()).add((device_id, token))

    def _is_dead(self, agent_id: str, device: Device) -> bool:
        dead = self._dead.get(agent_id)
        return dead is not None and (device.device_id, device.token) in dead

    def device(self, agent_id: str, device_id: str) -> Device | None:
        """The device as currently known, or None if it is gone or its token is dead."""
        agent = self._agents.get(agent_id)
        if agent is None:
            return None
        for device in agent.devices:
            if device.device_id == device_id:
                if self._is_dead(agent_id, device):
                    return None
                return device
        return None

    def eligible_targets(self, site: SiteSnapshot) -> tuple[Target, ...]:
        """Every live device of every agent of the site's account with availability and the
        site's push toggle on. Nobody else."""
        targets: list[Target] = []
        for agent_id in sorted(self._agents_by_account.get(site.account_id, ())):
            agent = self._agents[agent_id]
            if not agent.live_chat_available or not agent.push_enabled_by_site.get(site.site_id, False):
                continue
            targets.extend(
                Target(agent_id, device) for device in agent.devices if not self._is_dead(agent_id, device)
            )
        return tuple(targets)

    def __len__(self) -> int:
        return len(self._agents)
