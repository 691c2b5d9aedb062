"""AccessToken's cheap freshness check agrees with google-auth's `token_state` (no network)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from google.auth.credentials import Credentials, TokenState

from service.push.fcm_token import AccessToken


class StubCredential(Credentials):
    def refresh(self, request: Any) -> None:
        raise NotImplementedError(request)


def utc_in(delta: dt.timedelta) -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None) + delta  # naive UTC, as google-auth keeps it


@pytest.mark.parametrize(
    ("token", "expires_in"),
    [
        (None, dt.timedelta(hours=1)),
        ("t", None),
        ("t", dt.timedelta(hours=1)),
        ("t", dt.timedelta(minutes=3, seconds=50)),  # fresh a few seconds more
        ("t", dt.timedelta(minutes=3, seconds=40)),  # stale: google-auth refreshes 3 min 45 s early
        ("t", dt.timedelta(seconds=-1)),
        ("t", dt.timedelta(days=-20_000)),  # what invalidate() sets
    ],
)
async def test_is_fresh_exactly_when_google_auth_says_fresh(
    token: str | None, expires_in: dt.timedelta | None
) -> None:
    credential = StubCredential()  # type: ignore[no-untyped-call]
    credential.token = token
    credential.expiry = None if expires_in is None else utc_in(expires_in)
    access = AccessToken(credential, timeout_s=1.0)
    try:
        assert access.is_fresh() == (credential.token_state is TokenState.FRESH)
    finally:
        await access.close()


async def test_is_fresh_follows_a_new_expiry_and_invalidation() -> None:
    credential = StubCredential()  # type: ignore[no-untyped-call]
    credential.token = "t"
    credential.expiry = utc_in(dt.timedelta(seconds=-1))
    access = AccessToken(credential, timeout_s=1.0)
    try:
        assert not access.is_fresh()
        credential.expiry = utc_in(dt.timedelta(hours=1))  # as a refresh sets it
        assert access.is_fresh()
        access.invalidate()
        assert not access.is_fresh()
    finally:
        await access.close()
