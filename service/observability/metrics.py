"""Every metric the worker exports, on a registry of its own (no module-level globals).

Names follow Prometheus conventions (`notifier_*`, `_total`, `_seconds`). Labels are bounded
enums — event type, reason, provider, outcome, topic — never chat, agent or site ids or tokens.
Every known label combination is initialised at start-up so dashboards show zeros, not gaps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.domain.effects import IgnoredWhy, MissedWhen, NoteWhy
from service.domain.push import (
    AUTH_FAILURES_BEFORE_UNHEALTHY,
    ApnsEnvironment,
    AuthHealth,
    OutcomeKind,
    Provider,
    PushKind,
    SkipReason,
)
from service.domain.rounds import Outcome
from service.wire.commands import TEST_REQUESTED
from service.wire.inbound import AGENT_UPDATED, CHAT_EVENT_TYPES, REPAIRABLE, SITE_UPDATED
from service.wire.rejection import Reason

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0)
_ACCEPT_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800)
"""Agents accept within seconds to minutes (the default time to accept is 120 s): fine buckets there."""


class AuthSource(Protocol):
    """What the credential-health collector reads of a push sender (any `PushSender` is one)."""

    @property
    def provider(self) -> Provider: ...

    @property
    def auth(self) -> AuthHealth: ...


class Metrics:
    def __init__(self, topics: list[str]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_consumed = Counter(
            "notifier_events_consumed_total",
            "Usable events consumed, by CloudEvents type",
            ["type"],
            registry=r,
        )
        self.events_rejected = Counter(
            "notifier_events_rejected_total",
            "Records dead-lettered or skipped, by topic and reason",
            ["topic", "reason"],
            registry=r,
        )
        self.fields_repaired = Counter(
            "notifier_fields_repaired_total",
            "Unusable optional fields of otherwise usable events, dropped, clamped or truncated, "
            "by CloudEvents type, field and action",
            ["type", "field", "action"],
            registry=r,
        )
        self.events_ignored = Counter(
            "notifier_events_ignored_total",
            "Valid events that changed nothing (duplicates, no pending round), by rule",
            ["why"],
            registry=r,
        )
        self.pending_rounds = Gauge("notifier_pending_rounds", "Rounds waiting for an agent", registry=r)
        self.pending_timers = Gauge("notifier_pending_timers", "Entries in the timer heaps", registry=r)
        self.rounds_started = Counter("notifier_rounds_started_total", "Handoff rounds started", registry=r)
        self.rounds_closed = Counter(
            "notifier_rounds_closed_total", "Handoff rounds closed, by outcome", ["outcome"], registry=r
        )
        self.rounds_missed = Counter(
            "notifier_rounds_missed_total",
            "Missed rounds by when they were reported: in_time (within chatbot_max_delay of the "
            "deadline), late (after it: no chatbot message), expired_on_arrival (request read after "
            "its deadline)",
            ["when"],
            registry=r,
        )
        self.rounds_degraded = Counter(
            "notifier_rounds_degraded_total",
            "Rounds served in a degraded way: site_unknown (request for a site not in the directory "
            "yet), missed_without_site (default chatbot text), missed_without_chatbot (too late)",
            ["why"],
            registry=r,
        )
        self.deadline_lateness = Histogram(
            "notifier_deadline_lateness_seconds",
            "Time from a round's deadline to the Missed being committed",
            buckets=_LATENESS_BUCKETS,
            registry=r,
        )
        self.turn_seconds = Histogram(
            "notifier_turn_seconds",
            "Consumer-loop turns: stepping every owned partition and committing their transactions "
            "(a timer due during a turn fires at the start of the next)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.pushes = Counter(
            "notifier_pushes_total",
            "Push attempts, by provider, kind and outcome",
            ["provider", "kind", "outcome"],
            registry=r,
        )
        self.pushes_skipped = Counter(
            "notifier_pushes_skipped_total",
            "Pushes not sent (or given up before an answer), by provider and why "
            "(expired, no_sender, round_closed)",
            ["provider", "why"],
            registry=r,
        )
        self.push_queue_pushes = Gauge(
            "notifier_push_queue_pushes",
            "Pushes the fan-out holds, by provider: waiting for a request slot, waiting out a retry "
            "backoff, or in flight",
            ["provider"],
            registry=r,
        )
        self.push_queue_bytes = Gauge(
            "notifier_push_queue_bytes",
            "Estimated memory of the pushes the fan-out holds, by provider (an upper estimate)",
            ["provider"],
            registry=r,
        )
        self.push_queue_limit_bytes = Gauge(
            "notifier_push_queue_limit_bytes",
            "push_queue_max_bytes: from this many queued bytes on a provider the worker stops "
            "reading chat events until the queue drains",
            ["provider"],
            registry=r,
        )
        self.apns_environment_mismatches = Counter(
            "notifier_apns_environment_mismatches_total",
            "APNs pushes whose token belongs to the other environment than the device's snapshot names, "
            "by the environment the snapshot names",
            ["configured"],
            registry=r,
        )
        self._provider_auth = _ProviderAuthCollector()
        r.register(self._provider_auth)
        self.push_latency = Histogram(
            "notifier_push_latency_seconds",
            "Provider request latency",
            ["provider"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.handoff_to_push = Histogram(
            "notifier_handoff_to_push_seconds",
            "From the request's requested_at to the provider accepting the alert",
            ["provider"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.request_to_accept = Histogram(
            "notifier_request_to_accept_seconds",
            "From a round's request to the agent's join that accepted it",
            buckets=_ACCEPT_BUCKETS,
            registry=r,
        )
        self.rounds_unreachable = Counter(
            "notifier_rounds_unreachable_total",
            "Rounds whose request reached no agent's phone: nobody eligible, or every fan-out "
            "reported and none delivered it (requests read after their deadline not counted)",
            registry=r,
        )
        self.test_pushes = Counter(
            "notifier_test_pushes_total",
            "Test pushes (command livechat.push.test_requested), by outcome per device",
            ["outcome"],
            registry=r,
        )
        self.transactions = Counter(
            "notifier_transactions_total", "Kafka transactions, by result", ["result"], registry=r
        )
        self.restore_seconds = Histogram(
            "notifier_restore_seconds",
            "Time to restore one partition from the changelog",
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 20, 60),
        )
        self.consumer_lag = Gauge(
            "notifier_consumer_lag_records",
            "Records readable in the owned input partitions but not yet read (last stable offset "
            "minus position, summed); partitions nobody owns show only in the group's lag",
            registry=r,
        )
        self.owned_partitions = Gauge(
            "notifier_owned_partitions", "Input partitions this worker owns", registry=r
        )
        self.ready = Gauge(
            "notifier_ready", "1 when the worker is ready (state restored, partitions owned)", registry=r
        )
        self._initialise(topics)

    def _initialise(self, topics: list[str]) -> None:
        one_label: list[tuple[Counter, Iterable[str]]] = [
            (self.events_ignored, IgnoredWhy),
            (self.rounds_closed, Outcome),
            (self.rounds_missed, MissedWhen),
            (self.rounds_degraded, NoteWhy),
            (self.transactions, ("committed", "aborted")),
            (self.test_pushes, ("delivered", "token_rejected", "failed", "not_configured")),
        ]
        for counter, values in one_label:
            for value in values:
                counter.labels(value)
        for event_type in (*sorted(CHAT_EVENT_TYPES), AGENT_UPDATED, SITE_UPDATED, TEST_REQUESTED):
            self.events_consumed.labels(event_type)
        for topic in topics:
            for reason in Reason:
                self.events_rejected.labels(topic, reason.value)
        for event_type, repairs in REPAIRABLE.items():
            for repair in repairs:
                self.fields_repaired.labels(event_type, repair.field.value, repair.action.value)
        self._initialise_pushes()

    def _initialise_pushes(self) -> None:
        for provider in Provider:
            self.push_latency.labels(provider.value)
            self.handoff_to_push.labels(provider.value)
            for kind in PushKind:
                for push_outcome in OutcomeKind:
                    self.pushes.labels(provider.value, kind.value, push_outcome.value)
            for why in SkipReason:
                self.pushes_skipped.labels(provider.value, why.value)
            for gauge in (self.push_queue_pushes, self.push_queue_bytes, self.push_queue_limit_bytes):
                gauge.labels(provider.value)
        for environment in ApnsEnvironment:
            self.apns_environment_mismatches.labels(environment.value)

    def watch_provider_auth(self, senders: Iterable[AuthSource]) -> None:
        """Export these senders' credential health (read from them at each scrape)."""
        self._provider_auth.senders = list(senders)

    def watch_push_queues(self, read: Callable[[], Mapping[Provider, tuple[int, int, int]]]) -> None:
        """Export the fan-out's queues: `read()` gives (pushes, bytes, limit) per provider, at each scrape."""
        gauges = (self.push_queue_pushes, self.push_queue_bytes, self.push_queue_limit_bytes)
        for provider in Provider:
            for column, gauge in enumerate(gauges):
                gauge.labels(provider.value).set_function(
                    functools.partial(_queue_figure, read, provider, column)
                )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _queue_figure(
    read: Callable[[], Mapping[Provider, tuple[int, int, int]]], provider: Provider, column: int
) -> float:
    return float(read()[provider][column])


class _ProviderAuthCollector(Collector):
    """`notifier_provider_auth_*{provider}`, read from the senders' `auth` when scraped.

    The senders own the counts (they see every token fetch and refusal); reading them at scrape
    time keeps metrics out of the senders. A provider without a sender shows zeros.
    """

    def __init__(self) -> None:
        self.senders: list[AuthSource] = []

    def collect(self) -> Iterator[Metric]:
        health = {provider: AuthHealth() for provider in Provider}
        health.update({sender.provider: sender.auth for sender in self.senders})
        failures = CounterMetricFamily(
            "notifier_provider_auth_failures",
            "Failed OAuth2 access-token fetches (FCM) and provider-token refusals (APNs 403), by provider",
            labels=["provider"],
        )
        streak = GaugeMetricFamily(
            "notifier_provider_auth_consecutive_failures",
            "Credential failures since the last success, by provider; "
            f"at {AUTH_FAILURES_BEFORE_UNHEALTHY} /readyz turns false",
            labels=["provider"],
        )
        for provider, state in health.items():
            failures.add_metric([provider.value], state.failures_total)
            streak.add_metric([provider.value], state.consecutive_failures)
        yield failures
        yield streak
