"""The FCM fake over TLS, as Google serves FCM: ALPN negotiates HTTP/2 with clients that offer it
and falls back to HTTP/1.1, both endpoints answer on both, and the fake counts handshakes and
connections by protocol. The official client (firebase-admin: google-auth's token fetch, httpx
with HTTP/2) trusts the test CA through the process environment only, as a deployment would."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import firebase_admin
import httpx
import pytest
from firebase_admin import credentials as firebase_credentials
from firebase_admin import messaging

from devtools.credentials import GeneratedCredentials, TlsFiles, generate_credentials, generate_tls
from devtools.fakes.fcm import FcmFake

PROJECT = "livechat-notifier-test"


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return generate_tls(tmp_path / "tls")


@pytest.fixture
async def fake(tls: TlsFiles) -> AsyncIterator[FcmFake]:
    async with FcmFake(project_id=PROJECT, tls=tls, max_concurrent_streams=10) as fake:
        yield fake


@pytest.fixture
def creds(tmp_path: Path, fake: FcmFake, tls: TlsFiles) -> GeneratedCredentials:
    generated = generate_credentials(
        tmp_path / "tls", fcm_token_uri=fake.token_uri, fcm_project_id=PROJECT, tls=tls
    )
    fake.trust_service_account(generated.fcm_service_account)
    return generated


def message(token: str) -> messaging.Message:
    result = messaging.Message(
        data={"chat_id": "chat-1"},
        notification=messaging.Notification(title="t", body="b"),
        android=messaging.AndroidConfig(notification=messaging.AndroidNotification(channel_id="c")),
    )
    result.token = token
    return result


async def test_official_client_trusting_the_ca_through_the_environment_sends_over_http2(
    fake: FcmFake, creds: GeneratedCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(creds.ca_cert))  # httpx, read when its client is built
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(creds.ca_cert))  # google-auth's token fetch
    app = firebase_admin.initialize_app(
        firebase_credentials.Certificate(str(creds.fcm_service_account)), name=f"tls-{uuid.uuid4().hex}"
    )
    service_class = messaging._MessagingService
    google_url = service_class.FCM_URL
    service_class.FCM_URL = f"{fake.url}/v1/projects/{{0}}/messages:send"
    try:
        service = messaging._get_messaging_service(app)
    finally:
        service_class.FCM_URL = google_url
    try:
        batch = await messaging.send_each_async([message(f"token-{i}") for i in range(25)], app=app)
    finally:
        await service._async_client.aclose()
        # delete_app closes the client with asyncio.run(): not from inside this loop.
        await asyncio.to_thread(firebase_admin.delete_app, app)

    assert batch.success_count == 25, [r.exception for r in batch.responses]
    assert sorted(m.token or "" for m in fake.messages.items) == sorted(f"token-{i}" for i in range(25))
    stats = fake.connection_stats
    assert stats is not None
    # The sends went over HTTP/2 (25 streams, more than the 10 per connection advertised, so
    # httpx waited for streams or opened more connections); the token fetch over HTTP/1.1.
    assert stats.h2_streams == 25
    assert stats.protocols["h2"] >= 1
    assert stats.protocols["http/1.1"] == 1
    assert stats.token_connections == 1
    assert stats.tls_handshakes == stats.protocols["h2"] + stats.protocols["http/1.1"]


async def test_a_client_offering_only_http1_falls_back_and_every_connection_is_counted(
    fake: FcmFake, creds: GeneratedCredentials
) -> None:
    context = ssl.create_default_context(cafile=str(creds.ca_cert))
    context.set_alpn_protocols(["http/1.1"])  # what aiohttp's default context offers
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=3)) as http:
        async with http.post(
            f"{fake.url}/token", data={"grant_type": "password", "username": "u"}
        ) as response:
            assert response.status == 400
            assert (await response.json())["error"] == "unsupported_grant_type"
        async with http.post(
            f"{fake.url}/v1/projects/{PROJECT}/messages:send",
            json={"message": {"token": "t"}},
            headers={"Authorization": "Bearer not-issued"},
        ) as response:
            assert response.status == 401
            assert response.version == aiohttp.HttpVersion11
    stats = fake.connection_stats
    assert stats is not None
    assert stats.protocols == {"http/1.1": 1}  # one kept-alive connection for both requests
    assert stats.token_connections == 1  # its first request was for a token
    assert stats.tls_handshakes == 1
    assert stats.h2_streams == 0


async def test_http2_errors_and_unknown_paths_carry_json_bodies(
    fake: FcmFake, creds: GeneratedCredentials
) -> None:
    context = ssl.create_default_context(cafile=str(creds.ca_cert))
    async with httpx.AsyncClient(http2=True, verify=context) as client:
        unauthorized = await client.post(
            f"{fake.url}/v1/projects/{PROJECT}/messages:send", json={"message": {"token": "t"}}
        )
        missing = await client.get(f"{fake.url}/nowhere")
    assert unauthorized.http_version == "HTTP/2"
    assert unauthorized.status_code == 401
    assert unauthorized.json()["error"]["status"] == "UNAUTHENTICATED"
    assert missing.status_code == 404
    stats = fake.connection_stats
    assert stats is not None
    assert stats.protocols == {"h2": 1}
    assert stats.h2_streams == 2
    assert stats.token_connections == 0


async def test_plain_http_stays_the_default(tmp_path: Path) -> None:
    async with FcmFake(project_id=PROJECT) as plain:
        assert plain.url.startswith("http://")
        assert plain.connection_stats is None
