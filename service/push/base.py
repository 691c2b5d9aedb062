"""The `PushSender` protocol every provider adapter implements.

The domain decides *what* to push (a `Push`, `service/domain/push.py`); each provider adapter
(fcm.py, apns.py) decides *how*: it maps the request onto the provider's message format and maps
the provider's answer onto one of four `OutcomeKind`s. Callers act on the kind only and never on
provider status codes. Each sender also reports whether its credentials work (`AuthHealth`), for
`/readyz` and metrics.
"""

from __future__ import annotations

from typing import Protocol

from service.domain.push import AuthHealth, Provider, Push, PushOutcome


class PushSender(Protocol):
    """Sends one push to one provider. Implementations never raise for provider answers."""

    @property
    def provider(self) -> Provider: ...

    @property
    def auth(self) -> AuthHealth: ...

    async def send(self, push: Push) -> PushOutcome: ...

    async def close(self) -> None: ...
