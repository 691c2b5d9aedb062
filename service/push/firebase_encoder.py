"""firebase-admin's FCM v1 message encoder, the one private part of a library the worker uses.

firebase-admin validates and encodes a `messaging.Message` into the v1 JSON body only inside its
private `_MessagingService.encode_message`; it exports no encoder. The worker sends over its own
aiohttp client (see docs/benchmarks.md, "Figures behind the push code": the SDK's own send costs
many times the CPU), so it borrows that encoder and nothing else. All access to it is in this
module, which pyproject.toml exempts from SLF001 for that reason; `available()` is checked when
the FCM sender is built, so an SDK upgrade that drops it stops start-up with a clear message
instead of failing every push.
"""

from __future__ import annotations

from typing import Any

from firebase_admin import messaging

ENCODER_NAME = "messaging._MessagingService.encode_message"


def available() -> bool:
    """True if the installed firebase-admin still has the encoder."""
    return callable(getattr(messaging._MessagingService, "encode_message", None))


def encode_message(message: messaging.Message) -> dict[str, Any]:
    """The v1 `message` object, validated by firebase-admin (ValueError if invalid)."""
    encoded: dict[str, Any] = messaging._MessagingService.encode_message(message)
    return encoded
