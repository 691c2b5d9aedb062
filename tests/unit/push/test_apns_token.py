"""The APNs provider token: one per sender, re-signed inside Apple's 20-60 minute window (driven by a clock).

aioapns 4.0 would sign a token per connection (`JWTAuthorizationHeaderProvider`, re-signed after
30 minutes of `time.time()`); the sender replaces it with its own `ProviderToken`, so these tests
drive that token with an injected clock and check that aioapns' connections really use it.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import jwt
import pytest
from aioapns.connection import JWTAuthorizationHeaderProvider
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devtools.credentials import generate_credentials
from service.domain.push import ApnsEnvironment
from service.push.apns import ApnsSender
from service.push.apns_token import APPLE_MAX_AGE_S, APPLE_MIN_REFRESH_S, REFRESH_AFTER_S, ProviderToken
from tests.clocks import T0_MS, ManualClock

MINUTE = 60
START_MS = T0_MS


@pytest.fixture(scope="module")
def key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def claims(header: str, key_pem: str) -> tuple[dict[str, object], dict[str, object]]:
    scheme, _, token = header.partition(" ")
    assert scheme == "bearer"
    private = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    decoded = jwt.decode(token, private.public_key(), algorithms=["ES256"], options={"verify_iat": False})
    return jwt.get_unverified_header(token), decoded


def test_the_refresh_interval_lies_inside_apples_window() -> None:
    assert 20 * MINUTE == APPLE_MIN_REFRESH_S <= REFRESH_AFTER_S < APPLE_MAX_AGE_S == 60 * MINUTE


def test_the_token_is_kept_for_the_interval_then_re_signed_with_the_clocks_time(key_pem: str) -> None:
    clock = ManualClock()
    token = ProviderToken(key_pem=key_pem, key_id="KEY1234567", team_id="TEAM123456", clock=clock)
    signed_at: list[float] = []
    headers: list[str] = []

    while clock.elapsed_s <= 3 * 60 * MINUTE:  # three hours of pushes, one every 30 s
        header = token.get_header()
        if not headers or header != headers[-1]:
            headers.append(header)
            signed_at.append(clock.elapsed_s)
        age = clock.elapsed_s - signed_at[-1]
        assert age < APPLE_MAX_AGE_S, "a token older than 60 minutes was used"
        clock.advance(30)

    intervals = [later - earlier for earlier, later in itertools.pairwise(signed_at)]
    assert intervals, "the token was never re-signed"
    assert all(APPLE_MIN_REFRESH_S <= interval < APPLE_MAX_AGE_S for interval in intervals)
    assert set(intervals) == {REFRESH_AFTER_S}
    assert token.tokens_signed == len(headers)
    for header, at in zip(headers, signed_at, strict=True):
        jose, payload = claims(header, key_pem)
        assert jose == {"alg": "ES256", "kid": "KEY1234567", "typ": "JWT"}
        assert payload == {"iss": "TEAM123456", "iat": (START_MS + int(at * 1000)) // 1000}


@pytest.mark.parametrize("refresh_after_s", [19 * MINUTE, 60 * MINUTE, 90 * MINUTE])
def test_an_interval_outside_apples_window_is_refused(key_pem: str, refresh_after_s: int) -> None:
    with pytest.raises(ValueError, match="20 to 60 minutes"):
        ProviderToken(
            key_pem=key_pem, key_id="K", team_id="T", clock=ManualClock(), refresh_after_s=refresh_after_s
        )


async def test_every_connection_of_both_environments_signs_with_the_senders_token(tmp_path: Path) -> None:
    credentials = generate_credentials(tmp_path, fcm_token_uri="http://127.0.0.1:9/unused")
    clock = ManualClock()
    sender = await ApnsSender.create(
        key_file=credentials.apns_key,
        key_id=credentials.apns_key_id,
        team_id=credentials.apns_team_id,
        topic="com.example.livechat",
        clock=clock,
    )
    try:
        for environment in ApnsEnvironment:
            pool = sender._clients[environment].pool
            # What aioapns' APNsKeyConnectionPool.create_connection does for every new connection:
            own = JWTAuthorizationHeaderProvider(
                key=credentials.apns_key.read_text(),
                key_id=credentials.apns_key_id,
                team_id=credentials.apns_team_id,
            )
            protocol = pool.protocol_class("com.example.livechat", asyncio.get_running_loop(), None, own)
            assert protocol.auth_provider is sender.provider_token
        assert APPLE_MIN_REFRESH_S <= sender.provider_token.refresh_after_s < APPLE_MAX_AGE_S
        first = sender.provider_token.get_header()
        clock.elapsed_s = REFRESH_AFTER_S - 1
        assert sender.provider_token.get_header() == first
        clock.elapsed_s = REFRESH_AFTER_S
        assert sender.provider_token.get_header() != first
    finally:
        await sender.close()
