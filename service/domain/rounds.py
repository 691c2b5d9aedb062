"""Per-chat state: a pending handoff round, or the memory of a closed one.

A chat has at most one pending round. Once the round closes (accepted, ended or missed) the
chat keeps a small `ClosedRound` for the de-duplication window, so that a redelivered
`handoff_requested` with the same CloudEvents id does not start the round again.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

import msgspec


class DeviceRef(NamedTuple):
    """A NamedTuple rather than a dataclass: a million rounds hold several each, and the
    changelog decoder builds them directly, several times cheaper (docs/benchmarks.md, "Rounds
    and device references")."""

    agent_id: str
    device_id: str


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    ENDED = "ended"
    MISSED = "missed"


class RoundExtras(msgspec.Struct, frozen=True, gc=False):
    """The fields most rounds leave at their defaults; see `PendingRound.extras`."""

    claimed_at_ms: int = -1
    """`requested_at` as the request claimed it, when that differs from the round's trusted
    `requested_at_ms` (a producer clock ahead of the broker's); -1 when they are equal."""
    expired_on_arrival: bool = False
    """The request was read after its deadline (a replay or a backlog): nobody was pushed."""
    reminder_at_ms: int = -1
    """When the round's one reminder is due (the site's `reminder_after_seconds` after the
    request, before the deadline); -1: none, or already sent. Cleared in the same transaction
    that sends it, so a restart can lose a reminder but never send a second one."""
    rejected: tuple[DeviceRef, ...] = ()
    """Devices whose token a provider declared dead for this round's alert."""
    failed: tuple[DeviceRef, ...] = ()
    """Devices whose alert failed for good (request bug, retries ran out, no sender). A target in
    none of delivered / unsure / rejected / failed whose fan-out reported was still waiting for a
    slot or a retry when its push expired."""


_DEFAULTS = RoundExtras()


def extras_or_none(extras: RoundExtras) -> RoundExtras | None:
    """None for extras all at their defaults (most rounds): the round then holds no object."""
    return None if extras == _DEFAULTS else extras


class PendingRound(msgspec.Struct, frozen=True, gc=False):
    """A frozen msgspec Struct rather than a slotted frozen dataclass: a worker holds a million,
    and each is smaller and an order of magnitude faster to build (a frozen dataclass sets every
    field through `object.__setattr__`; figures: docs/benchmarks.md, "Rounds and device
    references"). `gc=False`: a round holds only strings, ints and tuples of them, so it can be
    part of no reference cycle and the cyclic collector need not track it."""

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
    """Kept only to word the alert again when a fan-out is resumed after a crash: dropped once
    the fan-out has finished."""
    unsure: tuple[DeviceRef, ...] = ()
    """Devices whose push may have reached the phone (sent, answer lost): they get the closing
    update too, but do not count as notified in the Missed report."""
    awaiting: tuple[DeviceRef, ...] = ()
    """Devices added after the first fan-out reported (an agent became eligible during the
    round) whose own fan-out has not reported yet. While `delivered` is None every target is
    awaited, so this stays empty."""
    extras: RoundExtras | None = None
    """The fields most rounds leave at their defaults (#10's claimed time and expiry on arrival,
    #12's reminder and failed deliveries), None while all are: one field for five, so a round
    costs less than with #10's two alone (figures: docs/benchmarks.md, "Rounds and device
    references"). Read them through the properties below."""

    @property
    def claimed_at_ms(self) -> int:
        return (self.extras or _DEFAULTS).claimed_at_ms

    @property
    def expired_on_arrival(self) -> bool:
        return (self.extras or _DEFAULTS).expired_on_arrival

    @property
    def reminder_at_ms(self) -> int:
        """When the round's one reminder is due; -1: none, or already sent."""
        return (self.extras or _DEFAULTS).reminder_at_ms

    @property
    def rejected(self) -> tuple[DeviceRef, ...]:
        return (self.extras or _DEFAULTS).rejected

    @property
    def failed(self) -> tuple[DeviceRef, ...]:
        return (self.extras or _DEFAULTS).failed

    def with_reminder_at(self, reminder_at_ms: int) -> PendingRound:
        """The round with its reminder due at `reminder_at_ms` (-1: cleared, once it is sent)."""
        extras = msgspec.structs.replace(self.extras or _DEFAULTS, reminder_at_ms=reminder_at_ms)
        return msgspec.structs.replace(self, extras=extras_or_none(extras))

    @property
    def request_claim_ms(self) -> int:
        return self.requested_at_ms if self.claimed_at_ms == -1 else self.claimed_at_ms

    @property
    def awaited(self) -> tuple[DeviceRef, ...]:
        """Devices pushed for this round whose fan-out has not reported yet."""
        return self.targets if self.delivered is None else self.awaiting

    @property
    def notified(self) -> tuple[DeviceRef, ...]:
        """Devices that may show the request: delivered ones, or every target while unsure."""
        if self.delivered is None:
            return self.targets
        if not self.awaiting:
            return self.delivered
        return self.delivered + self.awaiting

    @property
    def may_show(self) -> tuple[DeviceRef, ...]:
        """Devices that may show the alert and so need the closing update: the notified ones
        and those whose delivery is unknown."""
        return self.notified + self.unsure if self.unsure else self.notified

    @property
    def reached_nobody(self) -> bool:
        """As far as is known, no phone got the request: nobody was chosen, or every fan-out
        reported and none delivered it or may have (unsure). A round whose fan-out has not
        reported yet is not counted: its outcome is unknown, not negative."""
        return not self.delivered and not self.unsure and not self.awaited

    def with_report(
        self,
        covered: tuple[DeviceRef, ...],
        delivered: tuple[DeviceRef, ...],
        unsure: tuple[DeviceRef, ...] = (),
        rejected: tuple[DeviceRef, ...] = (),
        failed: tuple[DeviceRef, ...] = (),
    ) -> PendingRound:
        """The round once a fan-out over `covered` reported. A delivered list equal to the
        targets shares their tuple, and the visitor's name, needed by no later push, is let go
        once nothing is awaited."""
        covered_set = set(covered)
        awaiting = tuple(ref for ref in self.awaited if ref not in covered_set)
        known = self.delivered or ()
        if known:
            known_set = set(known)
            merged = known + tuple(ref for ref in delivered if ref not in known_set)
        else:
            merged = delivered
        return msgspec.structs.replace(
            self,
            delivered=self.targets if merged == self.targets else merged,
            awaiting=awaiting,
            unsure=_merged(self.unsure, unsure),
            extras=self._extras_with(_merged(self.rejected, rejected), _merged(self.failed, failed)),
            visitor_name=self.visitor_name if awaiting else None,
        )

    def _extras_with(
        self, rejected: tuple[DeviceRef, ...], failed: tuple[DeviceRef, ...]
    ) -> RoundExtras | None:
        if rejected is self.rejected and failed is self.failed:
            return self.extras  # nothing new: no copy
        return msgspec.structs.replace(self.extras or _DEFAULTS, rejected=rejected, failed=failed)

    def with_delivered(self, delivered: tuple[DeviceRef, ...]) -> PendingRound:
        """The round once its only fan-out (over all targets) finished."""
        return self.with_report(self.targets, delivered)

    def with_targets_added(self, added: tuple[DeviceRef, ...]) -> PendingRound:
        """The round with more devices chosen (their fan-out not reported yet)."""
        awaiting = self.awaiting if self.delivered is None else self.awaiting + added
        return msgspec.structs.replace(self, targets=self.targets + added, awaiting=awaiting)


def _merged(known: tuple[DeviceRef, ...], more: tuple[DeviceRef, ...]) -> tuple[DeviceRef, ...]:
    """`known` and the devices of `more` not in it; `known` itself (no copy) when nothing is new,
    so a round whose fan-outs reject nothing keeps the shared empty tuple."""
    if not more:
        return known
    seen = set(known)
    return known + tuple(ref for ref in more if ref not in seen)


class ClosedRound(msgspec.Struct, frozen=True, gc=False):
    """A frozen Struct for the same reasons as `PendingRound`."""

    request_id: str
    chat_id: str
    outcome: Outcome
    closed_at_ms: int
    forget_at_ms: int
    """When the chat's memory may be dropped (closed_at + de-duplication window)."""
    request_claim_ms: int = -1
    """`requested_at` as the closed round's request claimed it (-1: no round, only a join or
    an end was seen): a request re-sent under a new id claims the same time."""
    last_event_ms: int = -1
    """Latest trusted time of a join or end seen for the chat (-1: none). A request stamped at
    or before it was made before the chat was taken or ended: it starts nothing."""

    def supersedes(self, claimed_ms: int, at_ms: int) -> bool:
        """True when a request claiming `claimed_ms` (trusted time `at_ms`) is older than what
        this memory knows: a re-send of the closed round's request, or a request made before
        the last join or end."""
        return claimed_ms <= self.request_claim_ms or at_ms <= self.last_event_ms


ChatState = PendingRound | ClosedRound


def timer_due_ms(state: ChatState) -> int:
    """When the core next needs to look at this chat: the reminder while one is due before the
    deadline, the deadline, or the end of its memory. A restore schedules this one time per chat,
    so the reminder's timer, once it fires, schedules the deadline's (`reminders.remind`)."""
    if isinstance(state, PendingRound):
        reminder_ms = state.reminder_at_ms
        return reminder_ms if -1 < reminder_ms < state.deadline_ms else state.deadline_ms
    return state.forget_at_ms
