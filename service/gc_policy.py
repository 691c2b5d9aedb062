"""The one `gc.freeze` policy of the worker.

The worker holds up to millions of long-lived rounds. Rounds hold no reference cycles, so
reference counting frees them; the cyclic collector only walks them, and its full passes grow
with them (figures: docs/benchmarks.md, "Timers and the garbage collector").
So what is long-lived is frozen out of the collector's passes: after a restore, after each
take-over, and periodically for rounds created since (the composition root's job).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

FREEZE_INTERVAL_S = 30
"""How often rounds created since the last freeze are frozen."""


def freeze_long_lived() -> None:
    """Move every object alive now out of the collector's passes."""
    gc.freeze()


async def freeze_job() -> None:
    """The periodic job: a coroutine, so the scheduler runs it on the event loop."""
    freeze_long_lived()


@contextmanager
def collector_paused_then_frozen() -> Iterator[None]:
    """Around a bulk load of long-lived objects (a restore): the collector is off meanwhile (its
    ever-larger passes made decoding about 10x slower) and what was loaded is frozen after."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        freeze_long_lived()
        if collecting:
            gc.enable()
