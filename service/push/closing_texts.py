"""The texts a closing update shows on the phone, one per round outcome, in one place for both
providers. The core says *how* a round closed (`Outcome`, in the push's `outcome` data field);
how that reads on a lock screen is the adapters' business, so the texts live here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, assert_never

from service.domain.rounds import Outcome

CLOSED_FALLBACK: Final = "Chat request closed"
"""For a closing update whose outcome this worker does not know (never produced by the core)."""


def closing_text(data: Mapping[str, str]) -> str:
    """What replaces "Live chat request" once the round closed, from the push's `outcome` field."""
    try:
        outcome = Outcome(data.get("outcome", ""))
    except ValueError:
        return CLOSED_FALLBACK
    match outcome:
        case Outcome.ACCEPTED:
            return "Taken by an agent"
        case Outcome.ENDED:
            return "The visitor left"
        case Outcome.MISSED:
            return "Missed: nobody answered in time"
        case _:
            assert_never(outcome)
