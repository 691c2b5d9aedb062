"""A protocol-level fake of Firebase Cloud Messaging: Google's OAuth2 token endpoint plus FCM v1 send.

firebase-admin talks to it for real. The token endpoint takes the JWT-bearer grant a service
account makes, checks the assertion's RS256 signature against the public key of a service account
the fake was told to trust (`trust_service_account`), and issues opaque access tokens, counting
each fetch. `POST /v1/projects/{project}/messages:send` accepts only tokens it issued, validates the
v1 message shape minimally (and its size: over 4096 bytes, 400 INVALID_ARGUMENT; see
`payload_size`; a notification needs `android.notification.channel_id`, `notification_priority`
and `visibility` must be FCM's enum values, `*_loc_key` strings, `*_loc_args` arrays of strings
that need their `*_loc_key`) and answers
`{"name": "projects/<p>/messages/<id>"}`, or the FCM v1 error body (`error.details[].errorCode`
under the `FcmError` type, which firebase-admin parses).

Accepted messages land in `messages` (a `Recorder`), every send attempt in `attempts`. Faults:
per registration token (`set_fault`), for every send (`set_outage`), for the token endpoint
(`set_token_outage`: an error status, or a dropped connection), and a global added latency.
The server runs on 127.0.0.1 on a free port in its own thread (see `devtools.fakes`).

Plain HTTP/1.1 by default. With `tls` (a CA and server certificate from
`devtools.credentials.generate_tls`) it serves as Google does: TLS, ALPN offering HTTP/2 ("h2")
with HTTP/1.1 as the fallback (`devtools.fakes.tls_front`), both endpoints on both protocols;
`connection_stats` counts TLS handshakes and connections by protocol. Clients then trust the CA
through the process's trust settings (`SSL_CERT_FILE` for OpenSSL-based clients such as aiohttp
and httpx, `REQUESTS_CA_BUNDLE` for google-auth's requests), as they would a private CA in
production.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devtools.credentials import TlsFiles
from devtools.fakes import Recorder, ThreadedFake
from devtools.fakes.tls_front import ConnectionStats, H2Reply, TlsFront

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
"""google-auth signs every assertion for this audience, whatever the `token_uri`."""
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_MESSAGING_SCOPES = frozenset(
    {"https://www.googleapis.com/auth/cloud-platform", "https://www.googleapis.com/auth/firebase.messaging"}
)
FCM_ERRORS: dict[str, tuple[int, str]] = {
    "INVALID_ARGUMENT": (400, "INVALID_ARGUMENT"),
    "UNREGISTERED": (404, "NOT_FOUND"),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED"),
    "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED"),
    "UNAVAILABLE": (503, "UNAVAILABLE"),
    "INTERNAL": (500, "INTERNAL"),
    "THIRD_PARTY_AUTH_ERROR": (401, "UNAUTHENTICATED"),
}
"""FCM v1 `errorCode` -> (HTTP status, Google RPC status), as FCM answers them."""
_MAX_TTL_S = 2_419_200
MAX_PAYLOAD_BYTES = 4096
_TARGETS = frozenset({"token", "fid", "topic", "condition"})
_TTL = re.compile(r"^(\d+)(\.\d{1,9})?s$")
_RESERVED_DATA_KEYS = frozenset({"from", "message_type", "notification"})
_SEND_PATH = re.compile(r"^/v1/projects/([^/]+)/messages:send$")
_NOTIFICATION_PRIORITIES = frozenset(
    {f"PRIORITY_{level}" for level in ("UNSPECIFIED", "MIN", "LOW", "DEFAULT", "HIGH", "MAX")}
)
_VISIBILITIES = frozenset({"VISIBILITY_UNSPECIFIED", "PRIVATE", "PUBLIC", "SECRET"})
_LOC_FIELDS = (("title_loc_key", "title_loc_args"), ("body_loc_key", "body_loc_args"))


@dataclass(frozen=True, slots=True)
class FcmFault:
    """What the fake does instead of accepting a message."""

    error_code: str | None = None
    """An FCM v1 errorCode from `FCM_ERRORS`; its HTTP and RPC status come from that table."""
    http_status: int | None = None
    """Overrides the table's HTTP status (or answers a bare status when `error_code` is None)."""
    retry_after: str | None = None
    delay_s: float = 0.0
    """Answer (or fail) only after this long."""
    hang: bool = False
    """Never answer (until the fake stops)."""


@dataclass(frozen=True, slots=True)
class TokenFault:
    """What the token endpoint does instead of issuing an access token."""

    http_status: int = 503
    """Answer this status with an OAuth2 error body. google-auth retries 5xx and 429 itself
    (three attempts about 1 s and 2 s apart); 400 and 401 it treats as a final refusal."""
    error: str = "internal_failure"
    drop_connection: bool = False
    """Close the connection without an answer (google-auth: a TransportError, not retried)."""


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One accepted send: the v1 `message` object as the client posted it."""

    message: dict[str, Any]
    project: str
    message_id: str
    received_at: float
    """`time.monotonic()` when the request arrived."""

    @property
    def token(self) -> str | None:
        token = self.message.get("token") or self.message.get("fid")
        return str(token) if token is not None else None


@dataclass(frozen=True, slots=True)
class SendAttempt:
    token: str | None
    status: int


@dataclass(frozen=True, slots=True)
class _Account:
    key_id: str
    public_key: rsa.RSAPublicKey


@dataclass(frozen=True, slots=True)
class _Reply:
    """An answer, whichever protocol carries it."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def aiohttp(self) -> web.Response:
        return web.json_response(self.body, status=self.status, headers=self.headers or None)

    def h2(self) -> H2Reply:
        headers = [("content-type", "application/json"), *((k.lower(), v) for k, v in self.headers.items())]
        return self.status, headers, json.dumps(self.body).encode()


def _error(
    http_status: int,
    rpc_status: str,
    message: str,
    error_code: str | None = None,
    retry_after: str | None = None,
) -> _Reply:
    error: dict[str, Any] = {"code": http_status, "message": message, "status": rpc_status}
    if error_code is not None:
        error["details"] = [{"@type": FCM_ERROR_TYPE, "errorCode": error_code}]
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return _Reply(http_status, {"error": error}, headers)


def _shape_problem(message: Any) -> str | None:  # noqa: PLR0911 - a checklist reads best as early returns
    """The first thing wrong with a v1 `message` object, or None (a minimal subset of FCM's checks)."""
    if not isinstance(message, dict):
        return "message must be an object"
    if sum(key in message for key in ("token", "fid", "topic", "condition")) != 1:
        return "exactly one of token, fid, topic or condition is required"
    data = message.get("data", {})
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        return "data values must be strings"
    if any(k in _RESERVED_DATA_KEYS or k.startswith(("google", "gcm")) for k in data):
        return "data contains a reserved key"
    notification = message.get("notification", {})
    if not isinstance(notification, dict) or not all(isinstance(v, str) for v in notification.values()):
        return "notification fields must be strings"
    android = message.get("android", {})
    if not isinstance(android, dict):
        return "android must be an object"
    if "ttl" in android:
        match = _TTL.match(str(android["ttl"]))
        if match is None or int(match.group(1)) > _MAX_TTL_S:
            return "android.ttl must be a duration between 0s and 2419200s"
    if str(android.get("priority", "normal")).lower() not in {"normal", "high"}:
        return "android.priority must be normal or high"
    if not isinstance(android.get("collapse_key", ""), str):
        return "android.collapse_key must be a string"
    problem = _android_notification_problem(message, android)
    if problem is not None:
        return problem
    if payload_size(message) > MAX_PAYLOAD_BYTES:
        return "Message is too big"
    return None


def _android_notification_problem(message: dict[str, Any], android: dict[str, Any]) -> str | None:
    """What is wrong with the Android notification of `message`, or None (this worker's apps
    create their channels, so a notification without one would land in a fallback channel)."""
    notification = android.get("notification")
    if notification is None and "notification" not in message:
        return None
    if not isinstance(notification, dict):
        return "android.notification must be an object"
    channel_id = notification.get("channel_id")
    if not isinstance(channel_id, str) or not channel_id:
        return "android.notification.channel_id must be a non-empty string"
    if notification.get("notification_priority", "PRIORITY_UNSPECIFIED") not in _NOTIFICATION_PRIORITIES:
        return "android.notification.notification_priority is not a valid NotificationPriority"
    if notification.get("visibility", "VISIBILITY_UNSPECIFIED") not in _VISIBILITIES:
        return "android.notification.visibility is not a valid Visibility"
    return _localization_problem(notification)


def _localization_problem(notification: dict[str, Any]) -> str | None:
    """What is wrong with the loc keys and args of an Android notification, or None: a key is a
    string, args are an array of strings, and args need their key (the app could not place them)."""
    for key_field, args_field in _LOC_FIELDS:
        key, args = notification.get(key_field), notification.get(args_field)
        if key is not None and not isinstance(key, str):
            return f"android.notification.{key_field} must be a string"
        if args is None:
            continue
        if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
            return f"android.notification.{args_field} must be an array of strings"
        if not key:
            return f"android.notification.{args_field} requires android.notification.{key_field}"
    return None


def payload_size(message: dict[str, Any]) -> int:
    """What the fake holds against FCM's 4096-byte limit: the `message` without its target
    (`token`, `fid`, `topic` or `condition`) as compact UTF-8 JSON.

    FCM documents the limit for the data and notification payload ("the keys and the values")
    without saying exactly how it counts them. The whole message minus its target includes both,
    so the fake is, if anything, stricter than FCM (by the `android` block, about 150 bytes here):
    whatever passes here passes FCM. It counts UTF-8 bytes, not JSON escapes of non-ASCII
    characters, so a name in CJK or emoji is as big here as on the wire.
    """
    untargeted = {key: value for key, value in message.items() if key not in _TARGETS}
    return len(json.dumps(untargeted, ensure_ascii=False, separators=(",", ":")).encode())


class FcmFake(ThreadedFake):
    """OAuth2 token endpoint + FCM v1 send endpoint on 127.0.0.1."""

    def __init__(
        self,
        *,
        project_id: str,
        token_lifetime_s: int = 3600,
        latency_s: float = 0.0,
        tls: TlsFiles | None = None,
        max_concurrent_streams: int = 100,
    ) -> None:
        """`tls`: serve HTTPS with ALPN h2 / http/1.1 instead of plain HTTP/1.1.
        `max_concurrent_streams`: what the fake advertises on HTTP/2 connections."""
        super().__init__("fcm-fake")
        self._front = (
            TlsFront(tls, self._h2_request, max_concurrent_streams=max_concurrent_streams)
            if tls is not None
            else None
        )
        self.project_id = project_id
        self.token_lifetime_s = token_lifetime_s
        self.latency_s = latency_s
        """Added to every send (not to token fetches)."""
        self.token_latency_s = 0.0
        """Added to every token request, before it is answered."""
        self.messages: Recorder[ReceivedMessage] = Recorder()
        self.attempts: Recorder[SendAttempt] = Recorder()
        """Every answered send (after any injected delay or hang)."""
        self.arrivals: Recorder[dict[str, Any]] = Recorder()
        """Every well-formed send as it arrives, before its answer: shows what is in flight."""
        self.token_requests: Recorder[float] = Recorder()
        """`time.monotonic()` of each access token the fake issued."""
        self.token_attempts: Recorder[float] = Recorder()
        """`time.monotonic()` of every request to the token endpoint, issued or not."""
        self._token_outage: TokenFault | None = None
        self._accounts: dict[str, _Account] = {}
        self._issued: dict[str, float] = {}
        self._faults: dict[str, FcmFault] = {}
        self._outage: FcmFault | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._next_id = 0

    # -- configuration (any thread) ------------------------------------------------------------

    def trust_service_account(self, service_account_file: Path) -> None:
        """Accept token requests signed by this service account's key."""
        info = json.loads(service_account_file.read_text())
        key = serialization.load_pem_private_key(
            info["private_key"].encode(), password=None, unsafe_skip_rsa_key_validation=True
        )
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError("service account key is not RSA")
        self._accounts[info["client_email"]] = _Account(info["private_key_id"], key.public_key())

    def set_fault(self, token: str, fault: FcmFault) -> None:
        self._faults[token] = fault

    def clear_faults(self) -> None:
        self._faults.clear()

    def set_outage(self, fault: FcmFault | None) -> None:
        """Apply `fault` to every send (e.g. `FcmFault("UNAVAILABLE")`); None ends the outage."""
        self._outage = fault

    def set_token_outage(self, fault: TokenFault | None) -> None:
        """Apply `fault` to every token request (e.g. `TokenFault(drop_connection=True)`); None ends it."""
        self._token_outage = fault

    def revoke_tokens(self) -> None:
        """Forget every issued access token: the next send with one gets 401."""
        self._issued.clear()

    @property
    def token_fetches(self) -> int:
        return len(self.token_requests.items)

    @property
    def url(self) -> str:
        """The endpoint to give the FCM sender (it appends /v1/projects/...)."""
        return f"{'https' if self._front is not None else 'http'}://127.0.0.1:{self.port}"

    @property
    def connection_stats(self) -> ConnectionStats | None:
        """TLS handshakes and connections by protocol (None when serving plain HTTP)."""
        return self._front.stats if self._front is not None else None

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    # -- lifecycle --------------------------------------------------------------------------------

    async def _serve(self) -> int:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._send)
        self._stopping = asyncio.Event()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        if self._front is not None:
            return await self._front.serve(self._runner)
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        return int(self._runner.addresses[0][1])

    async def _shutdown(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        if self._front is not None:
            await self._front.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers (fake's thread) -------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = {key: str(value) for key, value in (await request.post()).items()}
        reply = await self._token_reply(form)
        if reply is None:
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPServiceUnavailable  # never reaches the client: the connection is gone
        return reply.aiohttp()

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.read()
        authorization = request.headers.get("Authorization", "")
        return (await self._send_reply(request.match_info["project"], authorization, body)).aiohttp()

    async def _h2_request(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> H2Reply | None:
        """The same endpoints over HTTP/2 (TLS only)."""
        match = _SEND_PATH.match(path)
        if method == "POST" and path == "/token":
            reply = await self._token_reply(dict(parse_qsl(body.decode(errors="replace"))))
            return None if reply is None else reply.h2()
        if method == "POST" and match is not None:
            return (await self._send_reply(match.group(1), headers.get("authorization", ""), body)).h2()
        return _Reply(404, {"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}}).h2()

    async def _token_reply(self, form: dict[str, str]) -> _Reply | None:
        """The token endpoint's answer to a form, or None to drop the connection."""
        self.token_attempts.append(time.monotonic())
        if self.token_latency_s and self._stopping is not None:
            # Cut short by stop(), like a hang: no handler outlives the fake.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.token_latency_s)
        outage = self._token_outage
        if outage is not None and outage.drop_connection:
            return None
        if outage is not None:
            return _Reply(outage.http_status, {"error": outage.error})
        if form.get("grant_type") != JWT_BEARER_GRANT:
            return _Reply(400, {"error": "unsupported_grant_type"})
        assertion = str(form.get("assertion", ""))
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            account = self._accounts.get(str(unverified.get("iss")))
            if account is None or jwt.get_unverified_header(assertion).get("kid") != account.key_id:
                raise jwt.InvalidTokenError("unknown service account or key id")
            claims = jwt.decode(
                assertion,
                account.public_key,
                algorithms=["RS256"],
                audience=GOOGLE_TOKEN_AUDIENCE,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except jwt.PyJWTError as error:
            return _Reply(400, {"error": "invalid_grant", "error_description": str(error)})
        if not _MESSAGING_SCOPES & set(str(claims["scope"]).split()):
            return _Reply(400, {"error": "invalid_scope"})
        access_token = "ya29.fake-" + secrets.token_urlsafe(24)
        self._issued[access_token] = time.monotonic() + self.token_lifetime_s
        self.token_requests.append(time.monotonic())
        return _Reply(
            200, {"access_token": access_token, "expires_in": self.token_lifetime_s, "token_type": "Bearer"}
        )

    def _authorized(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        expires = self._issued.get(token)
        return scheme.lower() == "bearer" and expires is not None and expires > time.monotonic()

    async def _send_reply(self, project: str, authorization: str, raw: bytes) -> _Reply:
        received_at = time.monotonic()
        if not self._authorized(authorization):
            return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if project != self.project_id:
            return _error(404, "NOT_FOUND", "Requested entity was not found.")
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        message = body.get("message") if isinstance(body, dict) else None
        problem = _shape_problem(message)
        if problem is not None or not isinstance(message, dict):
            return _error(400, "INVALID_ARGUMENT", problem or "message missing", "INVALID_ARGUMENT")
        token = message.get("token") or message.get("fid")
        self.arrivals.append(message)
        response = await self._answer(project, message, token, received_at)
        self.attempts.append(SendAttempt(token, response.status))
        return response

    async def _answer(
        self, project: str, message: dict[str, Any], token: str | None, received_at: float
    ) -> _Reply:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        fault = self._outage or (self._faults.get(token) if token else None)
        if fault is not None:
            if fault.hang and self._stopping is not None:
                await self._stopping.wait()
                return _error(503, "UNAVAILABLE", "The fake is stopping.")
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            if fault.error_code is not None or fault.http_status is not None:
                http_status, rpc_status = FCM_ERRORS.get(fault.error_code or "", (500, "UNKNOWN"))
                return _error(
                    fault.http_status or http_status,
                    rpc_status,
                    f"Injected fault {fault.error_code or fault.http_status}.",
                    fault.error_code,
                    fault.retry_after,
                )
        self._next_id += 1
        message_id = f"0:{self._next_id}%fake"
        self.messages.append(ReceivedMessage(message, project, message_id, received_at))
        return _Reply(200, {"name": f"projects/{project}/messages/{message_id}"})
