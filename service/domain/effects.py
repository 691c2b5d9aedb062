"""Effects: what the core asks the shell to do, as plain data.

The shell executes them in order inside the partition's Kafka transaction (state writes and
output events) or after it commits (pushes), so a push never goes out for a state change that
was rolled back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from service.domain.push import Provider, Push
from service.domain.rounds import ChatState, DeviceRef, Outcome


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
    late: bool = False
    """The deadline passed more than `chatbot_max_delay` before the worker could report it (a
    replay, a backlog, a long outage): no chatbot message was posted."""
    expired_on_arrival: bool = False
    """The request itself was read after its deadline: nobody was pushed."""
    notified: tuple[NotifiedAgent, ...] = ()
    """Per agent the round chose, what came of the request on each of its devices."""


class DeviceOutcome(StrEnum):
    """What came of a round's request on one device, as the Missed report says it. The wire
    schema also lists `shed`, which no version since #10 produces (nothing live is shed)."""

    DELIVERED = "delivered"
    TOKEN_REJECTED = "token_rejected"  # noqa: S105 -- an outcome name, not a credential
    FAILED = "failed"
    PENDING = "pending"
    """Still waiting (for a slot, a retry, or the fan-out's report) when the deadline came."""


UNCONFIRMED = "unconfirmed"
"""`NotifiedDevice.reason` of a push that was sent but whose answer was lost (timed out, the
connection dropped): it may have reached the phone, so it is reported as failed, not delivered."""


@dataclass(frozen=True, slots=True)
class NotifiedDevice:
    device_id: str
    outcome: DeviceOutcome
    reason: str | None = None
    """Why a `failed` device failed, when known (`UNCONFIRMED`); None otherwise."""


@dataclass(frozen=True, slots=True)
class NotifiedAgent:
    agent_id: str
    devices: tuple[NotifiedDevice, ...]


@dataclass(frozen=True, slots=True)
class EmitChatbotMessage:
    event_id: str
    chat_id: str
    site_id: str
    text: str
    contact_email: str | None
    contact_phone: str | None
    """None: the site has no usable one (or is unknown); the chatbot command then leaves it out."""
    sent_at_ms: int


@dataclass(frozen=True, slots=True)
class EmitTokenRejected:
    event_id: str
    agent_id: str
    device_id: str
    provider: Provider
    reason: str
    rejected_at_ms: int


class MissedWhen(StrEnum):
    """How a missed round was reported. Bounded: a metric label."""

    IN_TIME = "in_time"
    """The round was held before its deadline and reported within `chatbot_max_delay`."""
    LATE = "late"
    """Held before its deadline, but reported after `chatbot_max_delay` (the worker was down or
    far behind): Missed marked late, no chatbot message."""
    EXPIRED_ON_ARRIVAL = "expired_on_arrival"
    """The request was read after its deadline (replay, backfill, backlog): nobody was pushed."""


@dataclass(frozen=True, slots=True)
class RoundClosed:
    """Bookkeeping for metrics and logs; carries no I/O."""

    chat_id: str
    site_id: str
    outcome: Outcome
    lateness_ms: int = 0
    missed_when: MissedWhen | None = None
    """Set for missed rounds only."""
    accepted_after_ms: int = -1
    """Accepted rounds: from the request's trusted time to the join's (never below 0); -1 otherwise."""
    unreachable: bool = False
    """The request reached no phone (`PendingRound.reached_nobody`) and was read in time."""


class NoteWhy(StrEnum):
    """A round the worker serves in a degraded way, reported (log + metric). Bounded."""

    SITE_UNKNOWN = "site_unknown"
    """A request names a site not in the directory (yet): the round waits for it until its
    deadline, pushing nobody meanwhile."""
    MISSED_WITHOUT_SITE = "missed_without_site"
    """A round missed while its site is still unknown: the chatbot message has the default text."""
    MISSED_WITHOUT_CHATBOT = "missed_without_chatbot"
    """A round missed later than `chatbot_max_delay`: the visitor is not messaged any more."""


@dataclass(frozen=True, slots=True)
class Noted:
    """Something an operator should know about a round; carries no I/O."""

    why: NoteWhy
    chat_id: str
    site_id: str


class IgnoredWhy(StrEnum):
    """Why a valid input changed nothing. Bounded: a metric label."""

    DUPLICATE_REQUEST = "duplicate_request"
    ROUND_ALREADY_PENDING = "round_already_pending"
    NO_PENDING_ROUND = "no_pending_round"
    STALE_REQUEST = "stale_request"
    """A request made before the chat's last join or end, or a re-send of a closed round's
    request under a new id: the chat was already served."""
    UNKNOWN_TYPE = "unknown_type"
    """Only when `tolerate_unknown_event_types` is on."""


@dataclass(frozen=True, slots=True)
class Ignored:
    """The input changed nothing; `why` names the rule (e.g. duplicate_request)."""

    chat_id: str
    why: IgnoredWhy


Effect = (
    PutState
    | ForgetChat
    | ScheduleTimer
    | SendPushes
    | EmitMissed
    | EmitChatbotMessage
    | EmitTokenRejected
    | RoundClosed
    | Noted
    | Ignored
)
