"""The state of one input partition: each chat's state, a heap of timers, and the pending count.

Timers live in a plain `heapq` of (due_ms, chat_id) rather than in APScheduler: measured on this
machine, APScheduler's memory job store costs 125-320 us and ~1 KB per job and drops jobs that
run over 1 s late, while a heap push costs ~2 us and ~190 B and never drops anything (README,
"Deadlines"). Timers are never cancelled: a popped timer is checked against the chat's current
state by the core (`on_timer`), so cancelling a round costs nothing.

Pending rounds are also indexed by site, so that a directory change (a site snapshot arrives, an
agent turns availability on) finds the rounds it may concern without scanning every chat.
"""

from __future__ import annotations

import heapq

from service.domain.rounds import ChatState, PendingRound, timer_due_ms


class PartitionStore:
    def __init__(self, partition: int) -> None:
        self.partition = partition
        self._chats: dict[str, ChatState] = {}
        self._timers: list[tuple[int, str]] = []
        self._pending = 0
        self._pending_by_site: dict[str, set[str]] = {}

    @classmethod
    def restored(cls, partition: int, states: dict[str, ChatState]) -> PartitionStore:
        """A store holding `states` (replayed from the changelog), its timers rebuilt."""
        store = cls(partition)
        store._chats = states  # adopt the replayed dict instead of copying a million entries
        by_site = store._pending_by_site
        for chat_id, state in states.items():
            if isinstance(state, PendingRound):
                chats = by_site.get(state.site_id)
                if chats is None:
                    by_site[state.site_id] = chats = set()
                chats.add(chat_id)
        store._pending = sum(map(len, by_site.values()))
        store.schedule_all()
        return store

    def get(self, chat_id: str) -> ChatState | None:
        return self._chats.get(chat_id)

    def put(self, state: ChatState) -> bool:
        """Store the chat's state; True when this starts a pending round."""
        previous = self._chats.get(state.chat_id)
        started = isinstance(state, PendingRound) and not isinstance(previous, PendingRound)
        self._pending += isinstance(state, PendingRound) - isinstance(previous, PendingRound)
        self._chats[state.chat_id] = state
        if isinstance(previous, PendingRound):
            self._unindex(previous)
        if isinstance(state, PendingRound):
            self._pending_by_site.setdefault(state.site_id, set()).add(state.chat_id)
        return started

    def forget(self, chat_id: str) -> None:
        previous = self._chats.pop(chat_id, None)
        self._pending -= isinstance(previous, PendingRound)
        if isinstance(previous, PendingRound):
            self._unindex(previous)

    def _unindex(self, round_: PendingRound) -> None:
        chats = self._pending_by_site.get(round_.site_id)
        if chats is not None:
            chats.discard(round_.chat_id)
            if not chats:
                del self._pending_by_site[round_.site_id]

    def pending_for_site(self, site_id: str) -> list[PendingRound]:
        """The pending rounds of one site, in no particular order."""
        chats = self._pending_by_site.get(site_id, ())
        return [state for chat_id in chats if isinstance(state := self._chats.get(chat_id), PendingRound)]

    def schedule(self, chat_id: str, due_ms: int) -> None:
        heapq.heappush(self._timers, (due_ms, chat_id))

    def schedule_all(self) -> None:
        """Rebuild the timer heap from the states (after a restore)."""
        self._timers = [(timer_due_ms(state), chat_id) for chat_id, state in self._chats.items()]
        heapq.heapify(self._timers)

    def next_due_ms(self) -> int | None:
        return self._timers[0][0] if self._timers else None

    def pop_due(self, until_ms: int, limit: int) -> list[str]:
        """Chat ids of up to `limit` timers due at or before `until_ms`, earliest first."""
        due: list[str] = []
        while self._timers and self._timers[0][0] <= until_ms and len(due) < limit:
            due.append(heapq.heappop(self._timers)[1])
        return due

    def pending_rounds(self) -> list[PendingRound]:
        return [state for state in self._chats.values() if isinstance(state, PendingRound)]

    @property
    def pending_count(self) -> int:
        return self._pending

    @property
    def chat_count(self) -> int:
        return len(self._chats)

    @property
    def timer_count(self) -> int:
        return len(self._timers)
