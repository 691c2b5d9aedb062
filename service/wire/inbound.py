"""The inbound codecs in one place: every decoder of a consumed record, the CloudEvents types each
topic carries, and the repairs they can make — what the consumer, the directory feed and the
metrics import.

A record is decoded in two steps, never raising: its CloudEvents envelope with `data` kept raw
(`envelope.py`), then `data` by `type` into a msgspec schema that checks types and bounds
(`chat_events.py` for the chat-events topic, `snapshots.py` for the agents and sites topics). The
result is a domain value with the repairs made to get it (`repair.py`), or a typed `Rejection`
(`rejection.py`). msgspec was picked over pydantic for this hot path because it validates straight
from bytes into typed structs, several times faster (figures: docs/benchmarks.md, "Decoding a chat event").

Only what makes a record unusable rejects it (ids, the request's time, the envelope). An optional
field that is of the wrong type, too long or out of range is repaired instead — dropped, clamped or
truncated — and the record is used: one bad phone number must not silence a site.
"""

from __future__ import annotations

from service.wire.chat_events import (
    AGENT_JOINED,
    CHAT_ENDED,
    CHAT_EVENT_TYPES,
    EVENT_TYPE_NAMES,
    HANDOFF_REPAIRS,
    HANDOFF_REQUESTED,
    decode_chat_event,
)
from service.wire.envelope import MAX_DETAIL_CHARS, DecodeLimits, decode_key
from service.wire.repair import Repair
from service.wire.snapshots import (
    AGENT_REPAIRS,
    AGENT_UPDATED,
    SITE_REPAIRS,
    SITE_UPDATED,
    decode_agent,
    decode_agent_with_repairs,
    decode_site,
)

__all__ = [
    "AGENT_JOINED",
    "AGENT_UPDATED",
    "CHAT_ENDED",
    "CHAT_EVENT_TYPES",
    "EVENT_TYPE_NAMES",
    "HANDOFF_REQUESTED",
    "MAX_DETAIL_CHARS",
    "REPAIRABLE",
    "SITE_UPDATED",
    "DecodeLimits",
    "decode_agent",
    "decode_agent_with_repairs",
    "decode_chat_event",
    "decode_key",
    "decode_site",
]

REPAIRABLE: dict[str, tuple[Repair, ...]] = {
    HANDOFF_REQUESTED: HANDOFF_REPAIRS,
    AGENT_UPDATED: AGENT_REPAIRS,
    SITE_UPDATED: SITE_REPAIRS,
}
"""Every repair the decoders can make, by event type: the label sets of `notifier_fields_repaired_total`."""
