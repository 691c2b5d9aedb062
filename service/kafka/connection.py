"""Connection settings shared by every Kafka client the worker creates."""

from __future__ import annotations

from typing import Any

from service.settings import Settings


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments common to aiokafka consumers, producers and admin clients."""
    return {"bootstrap_servers": settings.kafka_bootstrap_servers}
