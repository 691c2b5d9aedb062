"""The texts of a closing update: the core's (`Push.title` / `body` / loc keys: "Taken by Anna",
ended, missed) when it sent them, else a fixed text per round outcome, in one place for both
providers. The fixed texts are the fallback for closing updates built before the core named the
outcome in words (a round recovered from an older changelog, a core without the texts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, assert_never

from service.domain.push import Push
from service.domain.rounds import Outcome
from service.push.limits import AlertTexts

CLOSED_FALLBACK: Final = "Chat request closed"
"""For a closing update whose outcome this worker does not know (never produced by the core)."""


def closing_texts_of(push: Push) -> AlertTexts:
    """What a closing update shows: the core's texts, or the fixed text of its `outcome`."""
    if push.title is None and push.body is None and push.title_loc is None and push.body_loc is None:
        return AlertTexts(None, closing_text(push.data))
    return AlertTexts.of(push)


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
