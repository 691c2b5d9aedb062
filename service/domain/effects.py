"""Effects: what the core asks the shell to do, as plain data.

The shell executes them in order inside the partition's Kafka transaction (state writes and
output events) or after it commits (pushes), so a push never goes out for a state change that
was rolled back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from service.domain.rounds import ChatState, DeviceRef, Outcome
from service.push.base import Provider, Push


@dataclass(frozen=True, slots=True)
class PutState:
    """Store the chat's state and write it to the changelog."""

    state: ChatState


@dataclass(frozen=True, slots=True)
class ForgetChat:
    """Drop the chat's state and tombstone it in the changelog."""

    chat_id: str


@dataclass(frozen=True, slots=True)
class ScheduleTimer:
    """Wake the core for this chat at `due_ms` (deadline, or end of de-duplication window)."""

    chat_id: str
    due_ms: int


@dataclass(frozen=True, slots=True)
class AddressedPush:
    device: DeviceRef
    push: Push


@dataclass(frozen=True, slots=True)
class SendPushes:
    """Fan out after commit. `report_delivery` asks the shell to feed the delivered devices back
    (`FanOutFinished`) so the round records them; closing updates need no report."""

    chat_id: str
    request_id: str
    requested_at_ms: int
    pushes: tuple[AddressedPush, ...]
    report_delivery: bool


@dataclass(frozen=True, slots=True)
class EmitMissed:
    event_id: str
    chat_id: str
    site_id: str
    requested_at_ms: int
    deadline_ms: int
    missed_at_ms: int
    agents_notified: int
    devices_notified: int


@dataclass(frozen=True, slots=True)
class EmitChatbotMessage:
    event_id: str
    chat_id: str
    site_id: str
    text: str
    contact_email: str
    contact_phone: str
    sent_at_ms: int


@dataclass(frozen=True, slots=True)
class EmitTokenRejected:
    event_id: str
    agent_id: str
    device_id: str
    provider: Provider
    reason: str
    rejected_at_ms: int


@dataclass(frozen=True, slots=True)
class RoundClosed:
    """Bookkeeping for metrics and logs; carries no I/O."""

    chat_id: str
    site_id: str
    outcome: Outcome
    lateness_ms: int = 0


class IgnoredWhy(StrEnum):
    """Why a valid input changed nothing. Bounded: a metric label."""

    DUPLICATE_REQUEST = "duplicate_request"
    ROUND_ALREADY_PENDING = "round_already_pending"
    NO_PENDING_ROUND = "no_pending_round"
    UNKNOWN_TYPE = "unknown_type"
    """Only when `tolerate_unknown_event_types` is on."""


@dataclass(frozen=True, slots=True)
class Ignored:
    """The input changed nothing; `why` names the rule (e.g. duplicate_request)."""

    chat_id: str
    why: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """The input is well-formed but unusable (e.g. unknown site): dead-letter it."""

    reason: str
    detail: str


Effect = (
    PutState
    | ForgetChat
    | ScheduleTimer
    | SendPushes
    | EmitMissed
    | EmitChatbotMessage
    | EmitTokenRejected
    | RoundClosed
    | Ignored
    | Rejected
)
