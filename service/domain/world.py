"""What a decision reads besides the chat's own state: the directories and the worker's policy.

Its own module so that the decisions (`decide.py`) and the helpers they call (`alerts.py`,
`closing.py`) share it without importing each other in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.domain.directory import AgentDirectory, SiteDirectory


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
