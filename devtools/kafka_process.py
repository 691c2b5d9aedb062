"""Process and network helpers for running a Kafka broker as a child process.

A free port to listen on, a fresh KRaft cluster id, a raw Metadata request that tells whether a broker
serves clients (no Kafka client library needed), and the two defences against a broker that outlives
the Python process that started it: a kill at interpreter exit (:func:`kill_at_exit`) and a watchdog
shell that kills the broker when this process dies without running exit handlers
(:func:`spawn_watchdog`).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import socket
import struct
import subprocess
import uuid
from typing import Protocol

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port that nothing listens on right now (the usual bind-to-0 race applies)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def new_cluster_id() -> str:
    """A random KRaft cluster id."""
    # What Kafka's Uuid.randomUuid().toString() gives: 22 chars of URL-safe base64, never starting with '-'.
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def metadata_broker_ids(host: str, port: int, timeout: float = 2.0) -> list[int]:
    """Ask a broker for cluster metadata (Metadata v4, no topics) and return the live broker ids.

    A KRaft broker lists only registered, unfenced brokers, so seeing its own id means it serves clients.
    v4 is the oldest version Kafka 4.x still accepts (KIP-896) and needs no flexible encoding.
    """
    client_id = b"notifier-devtools"
    correlation_id = 1
    request = struct.pack(">hhih", 3, 4, correlation_id, len(client_id)) + client_id
    request += struct.pack(">ib", 0, 0)  # topics: empty array; allow_auto_topic_creation: false
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        payload = _recv_exact(sock, size)
    got_correlation, _throttle_ms, count = struct.unpack_from(">iii", payload, 0)
    if got_correlation != correlation_id:
        raise ConnectionError(f"unexpected correlation id {got_correlation}")
    offset = 12
    ids: list[int] = []
    for _ in range(count):
        (node_id,) = struct.unpack_from(">i", payload, offset)
        (host_len,) = struct.unpack_from(">h", payload, offset + 4)
        offset += 4 + 2 + host_len + 4
        (rack_len,) = struct.unpack_from(">h", payload, offset)
        offset += 2 + max(rack_len, 0)
        ids.append(node_id)
    return ids


class Killable(Protocol):
    """Anything that can be killed at interpreter exit (a running broker)."""

    def kill(self) -> None: ...


_KILL_AT_EXIT: set[Killable] = set()


def kill_at_exit(process: Killable) -> None:
    """Call ``process.kill()`` when the interpreter exits, unless :func:`forget_at_exit` came first."""
    _KILL_AT_EXIT.add(process)


def forget_at_exit(process: Killable) -> None:
    """Undo :func:`kill_at_exit` (the process has been reaped)."""
    _KILL_AT_EXIT.discard(process)


def _kill_live_brokers() -> None:
    for broker in list(_KILL_AT_EXIT):
        with contextlib.suppress(Exception):
            broker.kill()


# A second line of defence for when atexit does not run (the Python process is SIGKILLed, or ends with
# os._exit): a shell in its own session blocks reading a pipe whose only writer is this process, and
# SIGKILLs the broker on end-of-file. It is ended as soon as this process has reaped the broker, so
# that it never signals a recycled pid.
_WATCHDOG_SCRIPT = 'while read -r _; do :; done; kill -9 "$1" 2>/dev/null'


def spawn_watchdog(pid: int) -> subprocess.Popen[bytes]:
    """Start a watchdog that SIGKILLs ``pid`` once this process is gone; :func:`end_watchdog` ends it."""
    return subprocess.Popen(
        ["sh", "-c", _WATCHDOG_SCRIPT, "kafka-broker-watchdog", str(pid)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def end_watchdog(watchdog: subprocess.Popen[bytes]) -> None:
    """Stop a watchdog without it killing anything (call once its broker has been reaped)."""
    watchdog.kill()
    watchdog.wait()
    if watchdog.stdin is not None:
        watchdog.stdin.close()


atexit.register(_kill_live_brokers)
