"""Push cost and rate: our senders (firebase-admin / aioapns inside `FcmSender` / `ApnsSender`) vs the
official clients alone and vs a bare HTTP client, posting the same payloads to the same provider
fakes, in one process and one run.

Each contender sends `pushes` alert pushes with at most `concurrency` in flight to a fake that
answers after `latency_s`. Client CPU is `time.thread_time()` of this thread (the fakes run their
own event loops in threads of their own, see `devtools.fakes`), divided by the pushes; the rate is
pushes over wall time. A warm-up (connections, OAuth / provider token) is not counted.

Official client alone: firebase-admin's own send path (`messaging.send_each_async` of an app whose
messaging service is pointed at the fake: it has no endpoint setting, so `FCM_URL` is swapped only
while the service is built); aioapns' `APNs` client with its default settings, pointed at the fake
through its protocol class, without `ApnsSender`'s repairs, timeout and outcome mapping.

Bare FCM: aiohttp, one OAuth2 access token fetched once with google-auth and cached, FCM v1 JSON
built per push. Bare APNs: httpx with HTTP/2 on one TLS connection, one ES256 provider token
signed once with PyJWT, the APNs JSON payload and headers built per push.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import firebase_admin
import httpx
import jwt
from aioapns import APNs, NotificationRequest, PushType
from firebase_admin import credentials as firebase_credentials
from firebase_admin import messaging
from google.auth.transport.requests import Request
from google.oauth2 import service_account

from benchmarks import push_tls
from benchmarks.rig import now_ms, ratio
from devtools.credentials import GeneratedCredentials, generate_credentials
from devtools.fakes.apns import ApnsFake
from devtools.fakes.fcm import FcmFake
from service.clock import SystemClock
from service.domain.push import OutcomeKind, Provider, Push, PushKind
from service.push.apns import ApnsSender
from service.push.base import PushSender
from service.push.fcm import FcmSender

TOPIC = "com.example.livechat.bench"
PROJECT = "bench-project"
WARM_UP = 20
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"


def make_push(provider: Provider, i: int) -> Push:
    chat_id = f"chat-push-{i:08d}"
    return Push(
        provider=provider,
        token=f"{'cd' * 16}{i:032x}",
        kind=PushKind.HANDOFF_REQUESTED,
        collapse_id=chat_id,
        expires_at_ms=now_ms() + 120_000,
        data={"type": "handoff_requested", "chat_id": chat_id, "site_id": "site-bench", "open_tab": "active"},
        title="Live chat request · Bench Tours",
        body="Ada is waiting for an agent",
    )


async def drive(
    send: Callable[[Push], Awaitable[bool]], provider: Provider, pushes: int, concurrency: int
) -> dict[str, float]:
    """Send `pushes` pushes with `concurrency` in flight; CPU of this thread per push and pushes/s."""
    for ok in await asyncio.gather(*(send(make_push(provider, i)) for i in range(WARM_UP))):
        if not ok:
            raise RuntimeError(f"{provider} warm-up push failed")
    items = [make_push(provider, WARM_UP + i) for i in range(pushes)]
    queue = iter(items)
    failures = 0

    async def lane() -> None:
        nonlocal failures
        for push in queue:
            if not await send(push):
                failures += 1

    cpu = time.thread_time()
    wall = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    wall = time.perf_counter() - wall
    cpu = time.thread_time() - cpu
    return {
        "pushes": pushes,
        "failures": failures,
        "cpu_us_per_push": round(cpu / pushes * 1e6, 1),
        "pushes_per_s": round(pushes / wall, 1),
    }


async def drive_sender(sender: PushSender, pushes: int, concurrency: int) -> dict[str, float]:
    """`drive` through one of our senders (counting only delivered pushes), then close it."""

    async def via_sender(push: Push) -> bool:
        return (await sender.send(push)).kind is OutcomeKind.DELIVERED

    try:
        return await drive(via_sender, sender.provider, pushes, concurrency)
    finally:
        await sender.close()


def fcm_v1_body(push: Push) -> dict[str, Any]:
    """The FCM v1 request body a bare client writes for an alert push (what firebase-admin sends)."""
    ttl = max(0, push.expires_at_ms - now_ms()) // 1000
    return {
        "message": {
            "token": push.token,
            "data": dict(push.data),
            "notification": {"title": push.title, "body": push.body},
            "android": {
                "collapse_key": push.collapse_id,
                "priority": "high",
                "ttl": f"{ttl}s",
                "notification": {"tag": push.collapse_id, "channel_id": "live_chat_requests"},
            },
        }
    }


async def fcm(
    credentials: GeneratedCredentials, fake: FcmFake, pushes: int, concurrency: int
) -> dict[str, Any]:
    sender = await FcmSender.create(
        service_account_file=credentials.fcm_service_account, clock=SystemClock(), endpoint=fake.url
    )

    ours = await drive_sender(sender, pushes, concurrency)

    official = await fcm_official_client(credentials.fcm_service_account, fake.url, pushes, concurrency)

    account = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
        str(credentials.fcm_service_account), scopes=[FCM_SCOPE]
    )
    await asyncio.to_thread(account.refresh, Request())
    url = f"{fake.url}/v1/projects/{credentials.fcm_project_id}/messages:send"
    headers = {"Authorization": f"Bearer {account.token}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

        async def bare_send(push: Push) -> bool:
            async with http.post(url, json=fcm_v1_body(push)) as response:
                answer = await response.json()
                return response.status == 200 and "name" in answer

        bare = await drive(bare_send, Provider.FCM, pushes, concurrency)
    return {
        "sender": ours,
        "official_client": official,
        "bare_aiohttp": bare,
        **_ratios(ours, official, bare),
    }


def fcm_message(push: Push) -> messaging.Message:
    """The firebase-admin message for an alert push, as an application using it alone writes it."""
    message = messaging.Message(
        data=dict(push.data),
        notification=messaging.Notification(title=push.title, body=push.body),
        android=messaging.AndroidConfig(
            collapse_key=push.collapse_id,
            priority="high",
            ttl=max(0, push.expires_at_ms - now_ms()) // 1000,
            # Its app's channel, as any Android 8+ app names one (the FCM fake requires it).
            notification=messaging.AndroidNotification(tag=push.collapse_id, channel_id="live_chat_requests"),
        ),
    )
    message.token = push.token  # Message(token=...) warns (deprecated for FIDs); the field is the same
    return message


async def fcm_official_client(
    service_account: Path, url: str, pushes: int, concurrency: int
) -> dict[str, float]:
    """The official FCM client alone: firebase-admin's `send_each_async`, its own auth and HTTP client,
    sending to the FCM endpoint at `url`."""
    certificate = firebase_credentials.Certificate(str(service_account))
    app = firebase_admin.initialize_app(certificate, name=f"bench-official-{uuid.uuid4().hex}")
    # firebase-admin formats the class attribute FCM_URL into the service's send URL once, when the
    # app's messaging service is built; set it for that moment only (as FcmSender once did).
    service_class = messaging._MessagingService  # noqa: SLF001 -- its only endpoint hook
    google_url = service_class.FCM_URL
    service_class.FCM_URL = f"{url}/v1/projects/{{0}}/messages:send"
    try:
        service = messaging._get_messaging_service(app)  # noqa: SLF001 -- builds and caches it on `app`
    finally:
        service_class.FCM_URL = google_url

    async def official_send(push: Push) -> bool:
        batch = await messaging.send_each_async([fcm_message(push)], app=app)
        return bool(batch.success_count == 1)

    try:
        return await drive(official_send, Provider.FCM, pushes, concurrency)
    finally:
        # delete_app() closes the service's HTTP client with asyncio.run(), which cannot run inside
        # this loop: close it here first, then delete the app from a worker thread.
        await service._async_client.aclose()  # noqa: SLF001
        await asyncio.to_thread(firebase_admin.delete_app, app)


async def apns(
    credentials: GeneratedCredentials, fake: ApnsFake, pushes: int, concurrency: int
) -> dict[str, Any]:
    sender = await ApnsSender.create(
        key_file=credentials.apns_key,
        key_id=credentials.apns_key_id,
        team_id=credentials.apns_team_id,
        topic=TOPIC,
        production_url=fake.url,
        sandbox_url=fake.url,
        extra_ca_file=credentials.ca_cert,
    )

    ours = await drive_sender(sender, pushes, concurrency)

    official = await apns_official_client(credentials, fake, pushes, concurrency)

    provider_token = jwt.encode(
        {"iss": credentials.apns_team_id, "iat": int(time.time())},
        credentials.apns_key.read_text(),
        algorithm="ES256",
        headers={"kid": credentials.apns_key_id},
    )
    context = ssl.create_default_context(cafile=str(credentials.ca_cert))
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(http2=True, verify=context, limits=limits, base_url=fake.url) as http:

        async def bare_send(push: Push) -> bool:
            payload = {
                "aps": {"alert": {"title": push.title, "body": push.body}, "sound": "default"},
                **push.data,
            }
            response = await http.post(
                f"/3/device/{push.token}",
                content=json.dumps(payload, separators=(",", ":")).encode(),
                headers={
                    "authorization": f"bearer {provider_token}",
                    "apns-topic": TOPIC,
                    "apns-push-type": "alert",
                    "apns-priority": "10",
                    "apns-expiration": str(push.expires_at_ms // 1000),
                    "apns-collapse-id": push.collapse_id,
                },
            )
            return response.status_code == 200

        bare = await drive(bare_send, Provider.APNS, pushes, concurrency)
    return {
        "sender": ours,
        "official_client": official,
        "bare_httpx_h2": bare,
        **_ratios(ours, official, bare),
    }


async def apns_official_client(
    credentials: GeneratedCredentials, fake: ApnsFake, pushes: int, concurrency: int
) -> dict[str, float]:
    """The official APNs client alone: aioapns' `APNs` with its defaults (pool, attempts, token)."""
    context = ssl.create_default_context(cafile=str(credentials.ca_cert))
    context.set_alpn_protocols(["h2"])
    client = APNs(
        key=credentials.apns_key.read_text(),
        key_id=credentials.apns_key_id,
        team_id=credentials.apns_team_id,
        topic=TOPIC,
        ssl_context=context,
    )
    # aioapns has no endpoint setting either: it connects to its protocol class's host and port.
    url = urlsplit(fake.url)
    client.pool.protocol_class = type(
        "FakeEndpoint",
        (client.pool.protocol_class,),
        {"APNS_SERVER": url.hostname, "APNS_PORT": url.port},
    )

    async def official_send(push: Push) -> bool:
        request = NotificationRequest(
            device_token=push.token,
            message={
                "aps": {"alert": {"title": push.title, "body": push.body}, "sound": "default"},
                **push.data,
            },
            time_to_live=max(0, push.expires_at_ms // 1000 - int(time.time())),
            priority=10,
            collapse_key=push.collapse_id,
            push_type=PushType.ALERT,
        )
        return (await client.send_notification(request)).is_successful

    try:
        return await drive(official_send, Provider.APNS, pushes, concurrency)
    finally:
        client.pool.close()


def _ratios(
    ours: dict[str, float], official: dict[str, float], bare: dict[str, float]
) -> dict[str, float | None]:
    return {
        "ratio_cpu_sender_over_bare": ratio(ours["cpu_us_per_push"], bare["cpu_us_per_push"]),
        "ratio_rate_sender_over_bare": ratio(ours["pushes_per_s"], bare["pushes_per_s"]),
        "ratio_cpu_official_over_bare": ratio(official["cpu_us_per_push"], bare["cpu_us_per_push"]),
        "ratio_rate_official_over_bare": ratio(official["pushes_per_s"], bare["pushes_per_s"]),
        "ratio_cpu_sender_over_official": ratio(ours["cpu_us_per_push"], official["cpu_us_per_push"]),
        "ratio_rate_sender_over_official": ratio(ours["pushes_per_s"], official["pushes_per_s"]),
    }


async def run(workdir: Path, pushes: int, concurrency: int, latency_s: float) -> dict[str, Any]:
    fcm_fake = FcmFake(project_id=PROJECT, latency_s=latency_s)
    await fcm_fake.start()
    try:
        credentials = generate_credentials(
            workdir / "push-credentials", fcm_token_uri=fcm_fake.token_uri, fcm_project_id=PROJECT
        )
        fcm_fake.trust_service_account(credentials.fcm_service_account)
        fcm_result = await fcm(credentials, fcm_fake, pushes, concurrency)
    finally:
        await fcm_fake.stop()
    apns_fake = ApnsFake(credentials, name="production", topic=TOPIC, latency_s=latency_s)
    await apns_fake.start()
    try:
        apns_result = await apns(credentials, apns_fake, pushes, concurrency)
    finally:
        await apns_fake.stop()
    # FCM as in production: TLS, HTTP/2 offered; each client in a process of its own (push_tls).
    fcm_tls = await push_tls.run(workdir, pushes, concurrency, latency_s)
    return {
        "pushes": pushes,
        "concurrency": concurrency,
        "latency_s": latency_s,
        "fcm": fcm_result,
        "apns": apns_result,
        "fcm_tls": fcm_tls,
    }
