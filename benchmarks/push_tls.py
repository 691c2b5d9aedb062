"""FCM as in production: the FCM fake served over TLS with ALPN offering HTTP/2 (falling back to
HTTP/1.1), and each FCM client in a process of its own trusting the fake's CA the way a process
trusts a private CA, set in its environment when it starts: `SSL_CERT_FILE` (OpenSSL's default
trust file, which aiohttp's default context loads at import and httpx when a client is built) and
`REQUESTS_CA_BUNDLE` (google-auth's token fetch via requests). No client is patched or configured
for it.

Contenders, one process each, one after the other, against the same fake, in two passes (the
second in reverse order; each contender's pass with less CPU per push is reported, both are kept):
  * `sender`: our `FcmSender` (aiohttp, which offers only http/1.1 in ALPN: one TLS connection per
    request in flight, kept alive);
  * `official_client`: firebase-admin's `send_each_async` alone (httpx with `http2=True`);
  * `bare_aiohttp`: aiohttp posting the FCM v1 JSON with one cached OAuth2 token (the baseline the
    push targets are judged against, as in `benchmarks.push`), its pool limited to the concurrency;
  * `bare_httpx_h2`: httpx with HTTP/2 and its default limits, the same JSON and token.
The sender and the official client run once more against the plain-HTTP fake in the same way
(`plain_http`), so what TLS and HTTP/2 change is read off one setup.

Each reports client CPU per push (`thread_time` of its main thread: the token fetch runs in a
worker thread, as in `benchmarks.push`) and pushes/s; the fake counts the TLS handshakes and the
connections by negotiated protocol, and the most open at once, during each contender's run. The
warm-up (20 pushes) opens 20 connections; a client with one connection per request in flight opens
the rest inside the measured window, so their handshakes are in its CPU per push, as they would
be after an idle spell longer than aiohttp's keep-alive (15 s) in production.

`python -m benchmarks.push_tls --contender NAME --url URL --service-account FILE ...` is the child.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from google.auth.transport.requests import Request
from google.oauth2 import service_account as google_service_account

from benchmarks import push
from benchmarks.rig import ratio
from devtools.credentials import generate_credentials, generate_tls
from devtools.fakes.fcm import FcmFake
from devtools.fakes.tls_front import ConnectionStats
from service.clock import SystemClock
from service.domain.push import Provider, Push
from service.push.fcm import FcmSender

CONTENDERS = ("sender", "official_client", "bare_aiohttp", "bare_httpx_h2")
PROJECT = "bench-project"
MAX_CONCURRENT_STREAMS = 100
"""What the fake advertises per HTTP/2 connection: an assumption (a common front-end value; the
value Google's front ends advertise for fcm.googleapis.com was not checked here)."""


async def _child(
    contender: str, url: str, service_account: Path, pushes: int, concurrency: int
) -> dict[str, Any]:
    if contender == "sender":
        sender = await FcmSender.create(
            service_account_file=service_account, clock=SystemClock(), endpoint=url
        )
        return await push.drive_sender(sender, pushes, concurrency)
    if contender == "official_client":
        return await push.fcm_official_client(service_account, url, pushes, concurrency)
    return await _bare(contender, url, service_account, pushes, concurrency)


async def _bare(
    contender: str, url: str, service_account: Path, pushes: int, concurrency: int
) -> dict[str, Any]:
    """A bare client with one cached OAuth2 token (the environment's CA trusted by default)."""
    account = google_service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
        str(service_account), scopes=[push.FCM_SCOPE]
    )
    await asyncio.to_thread(account.refresh, Request())
    project = account.project_id
    send_url = f"{url}/v1/projects/{project}/messages:send"
    headers = {"Authorization": f"Bearer {account.token}"}
    if contender == "bare_aiohttp":
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

            async def aiohttp_send(item: Push) -> bool:
                async with http.post(send_url, json=push.fcm_v1_body(item)) as response:
                    answer = await response.json()
                    return response.status == 200 and "name" in answer

            return await push.drive(aiohttp_send, Provider.FCM, pushes, concurrency)
    async with httpx.AsyncClient(http2=True, headers=headers) as client:

        async def httpx_send(item: Push) -> bool:
            response = await client.post(send_url, json=push.fcm_v1_body(item))
            return response.status_code == 200 and "name" in response.json()

        return await push.drive(httpx_send, Provider.FCM, pushes, concurrency)


async def _contender(
    contender: str, fake: FcmFake, service_account: Path, ca_file: Path, pushes: int, concurrency: int
) -> dict[str, Any]:
    """One contender in a fresh process; its figures plus what the fake saw meanwhile (over TLS)."""
    stats = fake.connection_stats or ConnectionStats()
    before = (stats.tls_handshakes, dict(stats.protocols), stats.h2_streams, stats.token_connections)
    stats.peak_open = stats.open
    env = os.environ | {"SSL_CERT_FILE": str(ca_file), "REQUESTS_CA_BUNDLE": str(ca_file)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.push_tls", "--contender", contender, "--url", fake.url,
        "--service-account", str(service_account), "--pushes", str(pushes),
        "--concurrency", str(concurrency),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        cwd=Path(__file__).parents[1],
    )  # fmt: skip
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"push_tls {contender} exited {process.returncode}: {stderr.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    if fake.connection_stats is None:
        return result
    protocols = {name: count - before[1].get(name, 0) for name, count in stats.protocols.items()}
    return result | {
        "tls_handshakes": stats.tls_handshakes - before[0],
        "connections_by_protocol": {name: count for name, count in protocols.items() if count},
        "peak_open_connections": stats.peak_open,
        "h2_requests": stats.h2_streams - before[2],
        "token_connections": stats.token_connections - before[3],
    }


async def _against(
    workdir: Path, contenders: tuple[str, ...], pushes: int, concurrency: int, latency_s: float, *, tls: bool
) -> dict[str, Any]:
    """`contenders` one after the other against one FCM fake, over TLS (h2 offered) or plain HTTP."""
    files = generate_tls(workdir)
    fake = FcmFake(
        project_id=PROJECT,
        latency_s=latency_s,
        tls=files if tls else None,
        max_concurrent_streams=MAX_CONCURRENT_STREAMS,
    )
    await fake.start()
    try:
        credentials = generate_credentials(
            workdir, fcm_token_uri=fake.token_uri, fcm_project_id=PROJECT, tls=files
        )
        fake.trust_service_account(credentials.fcm_service_account)
        # Two passes, the second in reverse order, each contender's better one kept (both in
        # `passes`): on a shared machine whichever runs first was measurably slower (up to 1.5x at
        # 1,000 pushes), whatever the contender.
        passes: dict[str, list[dict[str, Any]]] = {contender: [] for contender in contenders}
        for order in (contenders, contenders[::-1]):
            for contender in order:
                passes[contender].append(
                    await _contender(
                        contender, fake, credentials.fcm_service_account, files.ca_cert, pushes, concurrency
                    )
                )
        return {
            contender: min(runs, key=lambda run: float(run["cpu_us_per_push"]))
            | {
                "passes": [{k: run[k] for k in ("cpu_us_per_push", "pushes_per_s")} for run in runs],
                "failures": sum(int(run["failures"]) for run in runs),  # of both passes
            }
            for contender, runs in passes.items()
        }
    finally:
        await fake.stop()


async def run(workdir: Path, pushes: int, concurrency: int, latency_s: float) -> dict[str, Any]:
    """Every contender over TLS; then, for the same-setup comparison (child processes, plain
    HTTP/1.1 as `benchmarks.push` measures in-process), the sender and the official client alone."""
    results: dict[str, Any] = {
        "max_concurrent_streams": MAX_CONCURRENT_STREAMS,
        "alpn_offered": ["h2", "http/1.1"],
        **await _against(workdir / "fcm-tls", CONTENDERS, pushes, concurrency, latency_s, tls=True),
        "plain_http": await _against(
            workdir / "fcm-plain", ("sender", "official_client"), pushes, concurrency, latency_s, tls=False
        ),
    }
    ours, official, bare = results["sender"], results["official_client"], results["bare_aiohttp"]
    return results | {
        "ratio_cpu_sender_over_bare": ratio(ours["cpu_us_per_push"], bare["cpu_us_per_push"]),
        "ratio_rate_sender_over_bare": ratio(ours["pushes_per_s"], bare["pushes_per_s"]),
        "ratio_cpu_official_over_bare": ratio(official["cpu_us_per_push"], bare["cpu_us_per_push"]),
        "ratio_rate_official_over_bare": ratio(official["pushes_per_s"], bare["pushes_per_s"]),
        "ratio_cpu_sender_over_official": ratio(ours["cpu_us_per_push"], official["cpu_us_per_push"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contender", choices=CONTENDERS, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--service-account", type=Path, required=True)
    parser.add_argument("--pushes", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args()
    result = asyncio.run(
        _child(args.contender, args.url, args.service_account, args.pushes, args.concurrency)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
