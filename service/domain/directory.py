"""In-memory agent and site directories, rebuilt from their compacted topics at start-up.

The directories answer the one question fan-out asks — which devices may be pushed for a site —
and remember devices whose token a provider declared dead until a newer snapshot lists the
device again.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Mapping

import msgspec

from service.domain.events import AgentSnapshot, Device, SiteSnapshot


class Target(msgspec.Struct, frozen=True, gc=False):
    """One device of one agent, chosen to receive a push. A Struct: a lookup builds one per
    eligible device (100 for an account of 50 agents with two phones each), and a frozen
    dataclass took ~1 µs apiece to build."""

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


MAX_SHARED_TOGGLES = 100_000
"""Distinct push-toggle maps the directory shares between agents. Agents of one account mostly
have the same toggles, so a million agents hold tens of thousands of distinct maps; past this
many an agent keeps its own map (the table never grows with agents that share nothing)."""


class AgentDirectory:
    """Agents by id, and by account for `eligible_targets`: a lookup walks the site's account's
    agents only, whatever the size of the whole directory.

    It holds every agent of every account (a million in the scale benchmark), so what repeats
    between agents is stored once: account and site ids, and identical push-toggle maps
    (docs/benchmarks.md, "Directory scale")."""

    def __init__(self) -> None:
        self._agents: dict[str, AgentSnapshot] = {}
        # account_id -> its agents' ids, kept sorted: fan-out order is stable without a sort.
        # An insertion moves the ids after it: 0.9 s in all for one account of 100,000 agents
        # loaded in random order, nothing to speak of for accounts of thousands.
        self._agents_by_account: dict[str, list[str]] = {}
        # One string object per account or site id, shared by every snapshot naming it (few:
        # accounts and sites, not agents).
        self._ids: dict[str, str] = {}
        self._toggles: dict[tuple[tuple[str, bool], ...], Mapping[str, bool]] = {}
        # agent_id -> {(device_id, token)} a provider rejected. A newer snapshot of the agent
        # clears them: the platform re-lists a device only after the app registered again.
        self._dead: dict[str, set[tuple[str, str]]] = {}

    def upsert(self, agent: AgentSnapshot) -> None:
        previous = self._agents.get(agent.agent_id)
        if previous is not None and previous.account_id != agent.account_id:
            self._leave_account(previous)
            previous = None
        agent = self._shared(agent)
        if previous is None:
            insort(self._agents_by_account.setdefault(agent.account_id, []), agent.agent_id)
        self._agents[agent.agent_id] = agent
        self._dead.pop(agent.agent_id, None)

    def remove(self, agent_id: str) -> None:
        previous = self._agents.pop(agent_id, None)
        if previous is not None:
            self._leave_account(previous)
        self._dead.pop(agent_id, None)

    def _leave_account(self, agent: AgentSnapshot) -> None:
        members = self._agents_by_account[agent.account_id]
        del members[bisect_left(members, agent.agent_id)]
        if not members:
            del self._agents_by_account[agent.account_id]

    def _shared(self, agent: AgentSnapshot) -> AgentSnapshot:
        """The snapshot with its account id and push toggles replaced by equal objects that other
        agents already hold."""
        signature = tuple(agent.push_enabled_by_site.items())
        toggles = self._toggles.get(signature)
        if toggles is None:
            toggles = {self._id(site_id): enabled for site_id, enabled in signature}
            if len(self._toggles) < MAX_SHARED_TOGGLES:
                self._toggles[signature] = toggles
        return msgspec.structs.replace(
            agent, account_id=self._id(agent.account_id), push_enabled_by_site=toggles
        )

    def _id(self, value: str) -> str:
        return self._ids.setdefault(value, value)

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
        # One flat loop, no generator or sort: it runs per handoff and per site change, and
        # halved the cost of an account of 50 agents (docs/benchmarks.md, "Directory scale").
        targets: list[Target] = []
        append = targets.append
        agents, dead, site_id = self._agents, self._dead, site.site_id
        for agent_id in self._agents_by_account.get(site.account_id, ()):
            agent = agents[agent_id]
            if not agent.live_chat_available or not agent.push_enabled_by_site.get(site_id, False):
                continue
            rejected = dead.get(agent_id)
            for device in agent.devices:
                if rejected is None or (device.device_id, device.token) not in rejected:
                    append(Target(agent_id, device))
        return tuple(targets)

    def __len__(self) -> int:
        return len(self._agents)
