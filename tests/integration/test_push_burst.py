"""Issue #10, item 6 end to end: a burst of alert pushes degrades by lateness, never by loss.

Many handoffs for one site arrive at once; the site's account has many agents with a phone on
each provider. The fakes answer after a few tens of ms and the worker may keep only a few
requests open per provider, so a queue forms. Every deadline is a minute ahead, so every alert
must reach exactly the eligible devices, once, before its deadline (the fakes record when each
request arrived), and no push may be skipped.

The size is small enough for CI; the environment can scale it up to measure the drain time that
docs/benchmarks.md reports ("Push burst"), e.g.
`BURST_HANDOFFS=500 BURST_AGENTS=5 BURST_IN_FLIGHT=200 pytest tests/integration/test_push_burst.py -s`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from devtools import traffic
from service.app import Application
from service.domain.push import Provider, SkipReason
from tests.integration.kafka_helpers import eventually
from tests.integration.stack import Stack, now_ms

pytestmark = [pytest.mark.kafka]

MakeStack = Callable[..., Awaitable[Stack]]

HANDOFFS = int(os.environ.get("BURST_HANDOFFS", "100"))
AGENTS = int(os.environ.get("BURST_AGENTS", "10"))
"""Eligible agents, each with an Android phone and an iPhone: 20 devices, 2,000 alerts."""
TIME_TO_ACCEPT_S = 60
PROVIDER_LATENCY_S = 0.03
IN_FLIGHT = int(os.environ.get("BURST_IN_FLIGHT", "16"))
"""Per provider: 1,000 alerts each wait for 16 slots (before #10 a line of 80 behind them shed the rest)."""
DRAIN_TIMEOUT_S = 25.0 * max(1, HANDOFFS * AGENTS // 1000)


def skipped(app: Application) -> dict[str, float]:
    """Pushes the fan-out gave up on, by provider and why (only the non-zero ones)."""
    found = {}
    for provider in Provider:
        for why in SkipReason:
            value = app.metrics.registry.get_sample_value(
                "notifier_pushes_skipped_total", {"provider": provider.value, "why": why.value}
            )
            if value:
                found[f"{provider.value}/{why.value}"] = value
    return found


async def test_a_burst_of_alerts_is_delivered_completely_and_before_every_deadline(
    make_stack: MakeStack,
) -> None:
    stack = await make_stack(push_max_in_flight=IN_FLIGHT)
    fakes = stack.fakes
    fakes.fcm.latency_s = PROVIDER_LATENCY_S
    fakes.apns.latency_s = PROVIDER_LATENCY_S
    await stack.site("site-1", "acct-1", time_to_accept_seconds=TIME_TO_ACCEPT_S)
    eligible: set[str] = set()
    for i in range(AGENTS):
        android, iphone = f"fcm-token-{i}", f"{i:02x}" * 32
        eligible |= {android, iphone}
        devices = [
            traffic.device(f"android-{i}", "fcm", android),
            traffic.device(f"iphone-{i}", "apns", iphone),
        ]
        await stack.agent(f"agent-{i}", sites={"site-1": True}, devices=devices)
    # Not eligible: unavailable, or the site's pushes switched off.
    await stack.agent(
        "away", available=False, sites={"site-1": True}, devices=[traffic.device("a", "fcm", "t-away")]
    )
    await stack.agent("muted", sites={"site-1": False}, devices=[traffic.device("m", "apns", "ee" * 32)])
    app = await stack.start_worker()

    wall_minus_monotonic_ms = now_ms() - time.monotonic() * 1000
    requested_at = now_ms()
    deadline_ms = requested_at + TIME_TO_ACCEPT_S * 1000
    chats = [f"burst-{n:04d}" for n in range(HANDOFFS)]
    await asyncio.gather(*(stack.request(chat, at_ms=requested_at, tta=TIME_TO_ACCEPT_S) for chat in chats))
    wanted = {(chat, token) for chat in chats for token in eligible}

    def received() -> list[tuple[str, str, float]]:
        """(chat id, token, monotonic arrival) of every alert the fakes accepted."""
        fcm = [
            (str(m.message["data"]["chat_id"]), str(m.token), m.received_at) for m in fakes.fcm.messages.items
        ]
        apns = [(str(n.payload["chat_id"]), n.token, n.received_at) for n in fakes.apns.notifications.items]
        return fcm + apns

    await eventually(
        lambda: (
            {(chat, token) for chat, token, _ in received()} >= wanted
            or (bool(skipped(app)) and app.worker.fan_out.in_flight == 0)
        ),
        DRAIN_TIMEOUT_S,
        f"{len(wanted)} alerts",
    )
    arrived = received()
    assert skipped(app) == {}, f"pushes given up while every deadline was ahead; {len(arrived)} arrived"
    pairs = Counter((chat, token) for chat, token, _ in arrived)
    assert set(pairs) == wanted
    # At least once: only a request that timed out (it may have arrived) is sent again.
    retried = sum(
        app.metrics.registry.get_sample_value(
            "notifier_pushes_total",
            {"provider": p.value, "kind": "handoff_requested", "outcome": "retry_later"},
        )
        or 0
        for p in Provider
    )
    assert sum(pairs.values()) - len(pairs) <= retried, "an alert reached a device twice without a retry"
    first = min(at for _, _, at in arrived) * 1000 + wall_minus_monotonic_ms
    last = max(at for _, _, at in arrived) * 1000 + wall_minus_monotonic_ms
    assert last < deadline_ms, f"an alert arrived {last - deadline_ms:.0f} ms after its deadline"
    print(  # the drain time, for the record in the test log
        f"burst of {len(arrived)} alerts ({retried:.0f} retried) drained in {(last - first) / 1000:.2f} s "
        f"({len(arrived) / max(0.001, (last - first) / 1000):.0f} pushes/s), "
        f"{(last - requested_at) / 1000:.2f} s after the requests were published, "
        f"last {deadline_ms - last:.0f} ms before the deadline"
    )
