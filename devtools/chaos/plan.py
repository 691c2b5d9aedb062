"""The rounds to play and what each must end in, derived from a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum


class Fate(StrEnum):
    JOIN = "join"
    """An agent joins well before the deadline: no outcome."""
    END = "end"
    """The visitor leaves well before the deadline: no outcome."""
    EXPIRE = "expire"
    """Nobody comes: exactly one Missed and one chatbot message."""
    LATE_JOIN = "late_join"
    """An agent joins after the deadline: still exactly one Missed."""


@dataclass
class PlannedRound:
    index: int
    chat_id: str
    tta_s: int
    fate: Fate
    start_at_s: float
    """When (seconds into the run) the request is produced."""
    action_after_s: float
    """For JOIN / END / LATE_JOIN: seconds after the request's event time."""
    request_id: str = ""
    requested_at_ms: int = 0
    action_acked_ms: int | None = None
    """When the broker acknowledged the join/end (a join the broker holds only after the deadline
    cannot cancel the round: such a round is `ambiguous` and excluded from the verdict)."""
    produced: bool = field(default=False)

    @property
    def deadline_ms(self) -> int:
        return self.requested_at_ms + self.tta_s * 1000

    @property
    def expects_missed(self) -> bool:
        return self.fate in (Fate.EXPIRE, Fate.LATE_JOIN)

    @property
    def ambiguous(self) -> bool:
        """A cancelling event that reached the broker too close to (or after) the deadline."""
        if self.fate not in (Fate.JOIN, Fate.END) or self.action_acked_ms is None:
            return False
        return self.action_acked_ms > self.deadline_ms - AMBIGUITY_MARGIN_MS


AMBIGUITY_MARGIN_MS = 300


def plan_rounds(seed: int, rounds: int, rate_per_s: float, tta_range: tuple[int, int]) -> list[PlannedRound]:
    rng = random.Random(seed)
    planned: list[PlannedRound] = []
    for index in range(rounds):
        tta = rng.randint(*tta_range)
        fate = rng.choices(list(Fate), weights=[40, 20, 30, 10])[0]
        if fate in (Fate.JOIN, Fate.END):
            action_after = rng.uniform(0.2, 0.6) * tta  # leaves >= 40% of the window as margin
        elif fate is Fate.LATE_JOIN:
            action_after = tta + rng.uniform(0.5, 2.0)
        else:
            action_after = 0.0
        planned.append(
            PlannedRound(index, f"chat-{seed}-{index:06d}", tta, fate, index / rate_per_s, action_after)
        )
    return planned
