"""Credential health of the push senders: the threshold, and how metrics export it (no network)."""

from __future__ import annotations

from service.domain.push import AUTH_FAILURES_BEFORE_UNHEALTHY, AuthHealth, Provider, Push, PushOutcome
from service.observability.metrics import Metrics


class SenderWithHealth:
    def __init__(self, provider: Provider, auth: AuthHealth) -> None:
        self._provider = provider
        self.auth_health = auth

    @property
    def provider(self) -> Provider:
        return self._provider

    @property
    def auth(self) -> AuthHealth:
        return self.auth_health

    async def send(self, push: Push) -> PushOutcome:
        raise NotImplementedError(push)

    async def close(self) -> None:
        return None


def test_credentials_are_unhealthy_after_enough_failures_in_a_row() -> None:
    limit = AUTH_FAILURES_BEFORE_UNHEALTHY
    assert AuthHealth().ok
    assert AuthHealth(failures_total=40, consecutive_failures=limit - 1).ok
    assert not AuthHealth(failures_total=limit, consecutive_failures=limit).ok


def test_auth_metrics_start_at_zero_for_every_provider_and_follow_the_senders() -> None:
    metrics = Metrics([])

    def value(name: str, provider: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"provider": provider})

    for provider in ("fcm", "apns"):
        assert value("notifier_provider_auth_failures_total", provider) == 0
        assert value("notifier_provider_auth_consecutive_failures", provider) == 0

    fcm = SenderWithHealth(Provider.FCM, AuthHealth(failures_total=5, consecutive_failures=3))
    metrics.watch_provider_auth([fcm])

    assert value("notifier_provider_auth_failures_total", "fcm") == 5
    assert value("notifier_provider_auth_consecutive_failures", "fcm") == 3
    assert value("notifier_provider_auth_failures_total", "apns") == 0, "no APNs sender: zeros"
    fcm.auth_health = AuthHealth(failures_total=5, consecutive_failures=0)
    assert value("notifier_provider_auth_consecutive_failures", "fcm") == 0, "read at each scrape"
    assert b'notifier_provider_auth_failures_total{provider="fcm"} 5.0' in metrics.exposition()
