"""The core's and the decoder's parameters, built from the settings in one place, so `settings.py`
stays a plain model that imports nothing of the core or the wire."""

from __future__ import annotations

from service.domain.decide import Policy
from service.settings import Settings
from service.wire.inbound import DecodeLimits


def policy(settings: Settings) -> Policy:
    """The decisions' tunables (`World.policy`)."""
    return Policy(
        default_time_to_accept_s=settings.default_time_to_accept_seconds,
        dedup_window_ms=settings.dedup_window_seconds * 1000,
        closing_updates=settings.closing_updates,
        closing_update_ttl_ms=settings.closing_update_ttl_seconds * 1000,
        chatbot_max_delay_ms=settings.chatbot_max_delay_seconds * 1000,
    )


def decode_limits(settings: Settings) -> DecodeLimits:
    """What the decoders accept: sizes, times to accept, clock skew, event age."""
    return DecodeLimits(
        max_value_bytes=settings.max_value_bytes,
        max_time_to_accept_s=settings.max_time_to_accept_seconds,
        clock_skew_ms=settings.clock_skew_seconds * 1000,
        max_event_age_ms=settings.max_event_age_seconds * 1000,
    )
