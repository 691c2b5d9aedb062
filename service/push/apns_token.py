"""The APNs provider authentication token: one ES256 JWT per sender, re-signed inside Apple's window.

Apple wants a provider token re-signed no more often than every 20 minutes (more often is answered
429 `TooManyProviderTokenUpdates`) and at least every 60 minutes (an older one is answered 403
`ExpiredProviderToken`). aioapns 4.0 signs tokens in `JWTAuthorizationHeaderProvider`, re-signing
30 minutes after `time.time()` said it signed, but it makes one provider per *connection*: every
new connection signs a new token. It opens up to `max_connections` per environment and closes
each after 10 s idle, so bursty traffic would make new tokens far more often than every 20 minutes.
`ProviderToken` is shared by all connections of an `ApnsSender`, in both environments (one key
signs for both), and re-signs `REFRESH_AFTER_S` after it last signed, measured on the injected
clock's monotonic time (`iat` is the clock's wall time, as Apple checks it).
"""

from __future__ import annotations

from typing import Final

import jwt
from aioapns.connection import AuthorizationHeaderProvider

from service.clock import Clock

APPLE_MIN_REFRESH_S: Final = 20 * 60
APPLE_MAX_AGE_S: Final = 60 * 60
REFRESH_AFTER_S: Final = 40 * 60
"""In the middle of Apple's window: 20 minutes of margin on either side for clock skew."""


class ProviderToken(AuthorizationHeaderProvider):
    """The `authorization` header for APNs requests, signed lazily and re-signed on schedule."""

    def __init__(
        self,
        *,
        key_pem: str,
        key_id: str,
        team_id: str,
        clock: Clock,
        refresh_after_s: float = REFRESH_AFTER_S,
    ) -> None:
        if not APPLE_MIN_REFRESH_S <= refresh_after_s < APPLE_MAX_AGE_S:
            raise ValueError(
                f"APNs provider tokens must be re-signed after 20 to 60 minutes, not {refresh_after_s} s"
            )
        self._key_pem = key_pem
        self._key_id = key_id
        self._team_id = team_id
        self._clock = clock
        self.refresh_after_s = refresh_after_s
        self._header: str | None = None
        self._signed_at = 0.0
        self.tokens_signed = 0

    def get_header(self) -> str:
        now = self._clock.monotonic()
        if self._header is None or now - self._signed_at >= self.refresh_after_s:
            token = jwt.encode(
                {"iss": self._team_id, "iat": self._clock.now_ms() // 1000},
                self._key_pem,
                algorithm="ES256",
                headers={"kid": self._key_id},
            )
            self._header = f"bearer {token}"
            self._signed_at = now
            self.tokens_signed += 1
        return self._header
