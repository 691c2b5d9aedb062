"""What the push executor reports back to the core: a finished fan-out (who got the push) and a
device whose token a provider declared dead. Inputs of the decisions, so they are the core's types.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.domain.events import TokenRejection
from service.domain.rounds import DeviceRef


@dataclass(frozen=True, slots=True)
class FanOutFinished:
    partition: int
    chat_id: str
    request_id: str
    delivered: tuple[DeviceRef, ...]
    unsure: tuple[DeviceRef, ...] = ()
    """Devices whose outcome is unknown: a request may have reached the phone (timed out, or the
    connection dropped), then retries ran out, the push expired or the round closed. Never also
    in `delivered`."""
    rejected: tuple[DeviceRef, ...] = ()
    """Devices whose token the provider declared dead for this push."""
    failed: tuple[DeviceRef, ...] = ()
    """Devices whose push failed for good (request bug, retries ran out, no sender). A device of
    `covered` in none of delivered / unsure / rejected / failed was still waiting when the
    deadline came (expired before it could be sent)."""
    covered: tuple[DeviceRef, ...] | None = None
    """Every device this fan-out pushed (None: every target of the round). A round's later
    fan-out (an agent became eligible) covers only its own devices."""


@dataclass(frozen=True, slots=True)
class DeviceRejected:
    partition: int
    rejection: TokenRejection
    token: str
    """Kept in memory only, to mark the exact token dead; never logged or emitted."""


FanOutReport = FanOutFinished | DeviceRejected
