"""Per-chat state: a pending handoff round, or the memory of a closed one.

A chat has at most one pending round. Once the round closes (accepted, ended or missed) the
chat keeps a small `ClosedRound` for the de-duplication window, so that a redelivered
`handoff_requested` with the same CloudEvents id does not start the round again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


class DeviceRef(NamedTuple):
    """A NamedTuple rather than a dataclass: a million rounds hold several each, and the
    changelog decoder builds them directly (0.3 us instead of 1 us apiece)."""

    agent_id: str
    device_id: str


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    ENDED = "ended"
    MISSED = "missed"


@dataclass(frozen=True, slots=True)
class PendingRound:
    request_id: str
    """CloudEvents id of the `handoff_requested` that started the round."""
    chat_id: str
    site_id: str
    requested_at_ms: int
    deadline_ms: int
    targets: tuple[DeviceRef, ...]
    """Devices chosen for the fan-out when the round started."""
    delivered: tuple[DeviceRef, ...] | None = None
    """Devices a provider accepted the push for; None while the fan-out has not finished
    (after a crash, such a round is pushed again if its deadline is still ahead)."""
    visitor_name: str | None = None
    """Kept only to word the alert again when a fan-out is resumed after a crash."""

    @property
    def notified(self) -> tuple[DeviceRef, ...]:
        """Devices that may show the request: delivered ones, or every target while unsure."""
        return self.targets if self.delivered is None else self.delivered


@dataclass(frozen=True, slots=True)
class ClosedRound:
    request_id: str
    chat_id: str
    outcome: Outcome
    closed_at_ms: int
    forget_at_ms: int
    """When the chat's memory may be dropped (closed_at + de-duplication window)."""


ChatState = PendingRound | ClosedRound


def timer_due_ms(state: ChatState) -> int:
    """When the core next needs to look at this chat: the deadline, or the end of its memory."""
    return state.deadline_ms if isinstance(state, PendingRound) else state.forget_at_ms
