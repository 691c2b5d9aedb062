"""The fan-out's queues: one `ProviderQueue` per provider holding the pushes waiting for a slot,
earliest expiry first, and the memory bound over all of them (`Saturation`).

`FanOut` (fanout.py) moves entries (push_jobs.py) between stages; this module only orders and
counts them, and arms the one expiry timer per provider. No provider I/O here.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

import structlog

from service.domain.push import Provider, Push
from service.push.push_jobs import Entry, Stage

log = structlog.get_logger(__name__)

QUEUED_PUSH_OVERHEAD_B = 1_200
"""Bytes a push held by the fan-out costs besides its strings' characters: the `Push` and
`AddressedPush` objects, the data dict and each string's header, the queue entry and its heap
tuple. Measured by `python -m benchmarks.push_queue_memory` (figure: docs/benchmarks.md, "Push
burst", memory of a queued push); rounded up to stay conservative. `push_size` adds the
characters, so a queue's bytes are an upper estimate that costs a handful of `len()` calls per push."""


def push_size(push: Push) -> int:
    """Conservative estimate of the memory a push held by the fan-out keeps alive."""
    size = QUEUED_PUSH_OVERHEAD_B + len(push.token) + len(push.collapse_id)
    size += len(push.title or "") + len(push.body or "")
    size += len(push.public_title or "") + len(push.public_body or "")
    for localized in (push.title_loc, push.body_loc):
        if localized is not None:  # the objects around the strings fit in the overhead's margin
            size += len(localized.key) + sum(len(arg) for arg in localized.args)
    return size + sum(len(key) + len(value) for key, value in push.data.items())


class ProviderQueue:
    """One provider's pushes, earliest expiry first, served by `max_in_flight` slots.

    `held` / `held_bytes` count every push the fan-out holds for this provider until it is done:
    waiting for a slot, waiting out a retry backoff, or in flight. Entries dropped while waiting
    (round closed, partition lost) leave the heap lazily; the heap is rebuilt when they dominate.
    """

    def __init__(self, provider: Provider, max_in_flight: int, max_bytes: int) -> None:
        self.provider = provider
        self.max_in_flight = max_in_flight
        self.max_bytes = max_bytes
        self.in_flight = 0
        self.held = 0
        self.held_bytes = 0
        self._heap: list[tuple[int, int, Entry]] = []
        self._seq = itertools.count()
        self.expiry_timer: asyncio.TimerHandle | None = None
        self.expiry_timer_at_ms: int | None = None

    @property
    def saturated(self) -> bool:
        return self.held_bytes >= self.max_bytes

    @property
    def waiting(self) -> int:
        """Pushes in the heap waiting for a slot (dropped entries excluded)."""
        return sum(1 for _, _, entry in self._heap if entry.stage is Stage.QUEUED)

    def hold(self, entry: Entry) -> None:
        self.held += 1
        self.held_bytes += entry.size

    def release(self, entry: Entry) -> None:
        self.held -= 1
        self.held_bytes -= entry.size

    def put(self, entry: Entry) -> None:
        entry.stage = Stage.QUEUED
        heapq.heappush(self._heap, (entry.push.expires_at_ms, next(self._seq), entry))

    def head(self) -> Entry | None:
        """The earliest-expiring push still waiting, with dropped entries cleared off the top."""
        heap = self._heap
        while heap and heap[0][2].stage is not Stage.QUEUED:
            heapq.heappop(heap)
        return heap[0][2] if heap else None

    def pop(self) -> Entry:
        return heapq.heappop(self._heap)[2]

    def compact(self) -> None:
        """Rebuild the heap without dropped entries once they are most of it."""
        if len(self._heap) > 64 and len(self._heap) > 2 * self.held:
            self._heap = [item for item in self._heap if item[2].stage is Stage.QUEUED]
            heapq.heapify(self._heap)

    def arm_expiry(self, now_ms: int, due: Callable[[ProviderQueue], None]) -> None:
        """One timer per provider, at the earliest expiry of a push still waiting for a slot;
        when it fires, `due(self)` runs (the fan-out drops what expired)."""
        head = self.head()
        at_ms = head.push.expires_at_ms if head is not None else None
        if at_ms == self.expiry_timer_at_ms:
            return
        self.disarm_expiry()
        self.expiry_timer_at_ms = at_ms
        if at_ms is not None:
            self.expiry_timer = asyncio.get_running_loop().call_later(
                max(0.0, (at_ms - now_ms) / 1000), self._expired, due
            )

    def disarm_expiry(self) -> None:
        if self.expiry_timer is not None:
            self.expiry_timer.cancel()
            self.expiry_timer = None
        self.expiry_timer_at_ms = None

    def _expired(self, due: Callable[[ProviderQueue], None]) -> None:
        self.expiry_timer = None
        self.expiry_timer_at_ms = None
        due(self)


class Saturation:
    """Whether any provider's queue holds its `max_bytes` or more; logs each change."""

    def __init__(self, queues: dict[Provider, ProviderQueue]) -> None:
        self._queues = queues
        self._unsaturated = asyncio.Event()
        self._unsaturated.set()

    @property
    def saturated(self) -> bool:
        return any(queue.saturated for queue in self._queues.values())

    async def wait_unsaturated(self, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await self._unsaturated.wait()
        except TimeoutError:
            return False
        return True

    def changed(self) -> None:
        """Call after the queues' bytes changed: sets the event and logs when saturation flips."""
        saturated = self.saturated
        if saturated == (not self._unsaturated.is_set()):
            return
        held = {queue.provider.value: queue.held_bytes for queue in self._queues.values()}
        if saturated:
            self._unsaturated.clear()
            log.warning("push_queue_saturated", held_bytes=held)
        else:
            self._unsaturated.set()
            log.info("push_queue_unsaturated", held_bytes=held)

    def gauges(self) -> dict[Provider, tuple[int, int, int]]:
        """(pushes held, their estimated bytes, the limit) per provider, read at each scrape."""
        return {p: (q.held, q.held_bytes, q.max_bytes) for p, q in self._queues.items()}
