"""A real single-node Apache Kafka broker for tests and local runs, without Docker.

The broker's jars come from Maven Central: ``devtools/kafka/pom.xml`` names ``org.apache.kafka:kafka_2.13``
and ``mvn dependency:copy-dependencies`` copies it and its runtime dependencies into a cache directory
(``<repo>/.cache/kafka`` unless ``NOTIFIER_KAFKA_CACHE`` says otherwise). :func:`ensure_kafka_jars` does
that once per version of the POM.

:class:`KafkaBroker` runs one KRaft node that is both broker and controller (``java -cp ... kafka.Kafka``,
after ``kafka.tools.StorageTool format`` on first start) on free ports of 127.0.0.1, with settings that
make a single node usable for consumer groups and transactions (replication factors 1,
``transaction.state.log.min.isr=1``) and quick on a small machine (few internal-topic partitions, no
initial rebalance delay, modest heap). ``start()`` returns only once the broker lists itself in a Metadata
response, that is once it is registered and unfenced and answers clients.

Command line::

    python -m devtools.kafka_broker fetch                   # download the jars only
    python -m devtools.kafka_broker run [--port N] [--workdir D]   # run in the foreground until Ctrl-C
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self

REPO_ROOT = Path(__file__).resolve().parents[1]
POM_PATH = Path(__file__).resolve().parent / "kafka" / "pom.xml"
CACHE_ENV = "NOTIFIER_KAFKA_CACHE"
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "kafka"

HOST = "127.0.0.1"
BROKER_LISTENER = "PLAINTEXT"
CONTROLLER_LISTENER = "CONTROLLER"
NODE_ID = 1

_MARKER = ".complete"
_MVN_TIMEOUT_S = 900.0
_FORMAT_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 30.0
_POLL_INTERVAL_S = 0.1


class KafkaHarnessError(RuntimeError):
    """The broker harness could not do what was asked (missing tool, failed download, broker down)."""


# --------------------------------------------------------------------------------------------- jars


def default_cache_dir() -> Path:
    """``$NOTIFIER_KAFKA_CACHE`` if set, else ``<repo>/.cache/kafka``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser().resolve() if env else DEFAULT_CACHE_DIR


def _pom_digest() -> str:
    return hashlib.sha256(POM_PATH.read_bytes()).hexdigest()[:16]


def _java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
    java = shutil.which("java")
    if java is None:
        raise KafkaHarnessError(
            "java not found (neither $JAVA_HOME/bin/java nor on PATH): the Kafka broker needs Java 17+, "
            "e.g. `apt-get install openjdk-17-jre-headless`"
        )
    return java


def ensure_kafka_jars(cache_dir: Path | None = None) -> Path:
    """Return a directory holding the broker's classpath (``<dir>/*``), downloading it if needed.

    Idempotent and cheap once done: the jars live in ``<cache>/lib-<hash of pom.xml>`` with a marker file
    written last, so an interrupted download is redone and an edited POM gets a fresh directory. Maven
    writes into a staging directory that is renamed into place under a lock file, so concurrent callers
    neither download twice nor see half a classpath. Older ``lib-*`` directories are removed.
    """
    cache = (cache_dir or default_cache_dir()).resolve()
    digest = _pom_digest()
    lib = cache / f"lib-{digest}"
    if (lib / _MARKER).is_file():
        return lib

    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaHarnessError(
            "mvn not found on PATH: the Kafka jars are fetched from Maven Central with Maven, "
            "e.g. `apt-get install maven` (Java 17+ is needed as well)"
        )
    _java_executable()

    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one download at a time (two test runs started together)
        if (lib / _MARKER).is_file():
            return lib
        _download_jars(mvn, cache, lib, digest)
        for stale in [*cache.glob("lib-*"), *cache.glob("staging-*")]:  # older POMs, interrupted runs
            if stale != lib and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
    return lib


def _download_jars(mvn: str, cache: Path, lib: Path, digest: str) -> None:
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=cache))
    try:
        out_dir = staging / "lib"
        cmd = [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(POM_PATH),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={out_dir}",
        ]
        try:
            result = subprocess.run(
                cmd, capture_output=True, text=True, timeout=_MVN_TIMEOUT_S, check=False, cwd=staging
            )
        except subprocess.TimeoutExpired as exc:
            raise KafkaHarnessError(f"mvn did not finish in {_MVN_TIMEOUT_S:.0f} s: {' '.join(cmd)}") from exc
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()
            tail = "\n".join(output[-40:])
            raise KafkaHarnessError(
                f"mvn failed (exit {result.returncode}) fetching the Kafka jars:\n{' '.join(cmd)}\n{tail}"
            )
        if not any(out_dir.glob("kafka_2.13-*.jar")):
            raise KafkaHarnessError(f"mvn succeeded but no kafka_2.13 jar is in {out_dir}")
        (out_dir / _MARKER).write_text(f"{digest}\n", encoding="utf-8")
        shutil.rmtree(lib, ignore_errors=True)  # a leftover without a marker (an interrupted copy)
        out_dir.rename(lib)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def kafka_version(lib_dir: Path) -> str:
    """The Kafka version of a classpath directory made by :func:`ensure_kafka_jars`."""
    for jar in lib_dir.glob("kafka_2.13-*.jar"):
        return jar.name.removeprefix("kafka_2.13-").removesuffix(".jar")
    raise KafkaHarnessError(f"no kafka_2.13 jar in {lib_dir}")


# ------------------------------------------------------------------------------------------ helpers


def free_port(host: str = HOST) -> int:
    """A TCP port that nothing listens on right now (the usual bind-to-0 race applies)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _new_cluster_id() -> str:
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


_LIVE: set[KafkaBroker] = set()


def _kill_live_brokers() -> None:
    for broker in list(_LIVE):
        with contextlib.suppress(Exception):
            broker.kill()


# A second line of defence for when atexit does not run (the Python process is SIGKILLed, or ends with
# os._exit): a shell in its own session blocks reading a pipe whose only writer is this process, and
# SIGKILLs the broker on end-of-file. It is ended as soon as this process has reaped the broker, so
# that it never signals a recycled pid.
_WATCHDOG_SCRIPT = 'while read -r _; do :; done; kill -9 "$1" 2>/dev/null'


def _spawn_watchdog(pid: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["sh", "-c", _WATCHDOG_SCRIPT, "kafka-broker-watchdog", str(pid)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _end_watchdog(watchdog: subprocess.Popen[bytes]) -> None:
    watchdog.kill()
    watchdog.wait()
    if watchdog.stdin is not None:
        watchdog.stdin.close()


atexit.register(_kill_live_brokers)


# ----------------------------------------------------------------------------------------- broker


@dataclass
class Listener:
    """One entry of ``listeners``: name, security protocol and where it listens."""

    name: str
    port: int
    security_protocol: str = "PLAINTEXT"
    host: str = HOST
    advertised: bool = True

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


# Single node, fast first use on a 2-core machine. Everything here can be overridden by extra_properties.
BASE_PROPERTIES: Mapping[str, str] = {
    "process.roles": "broker,controller",
    "node.id": str(NODE_ID),
    "controller.listener.names": CONTROLLER_LISTENER,
    "inter.broker.listener.name": BROKER_LISTENER,
    # One replica everywhere, or consumer groups and transactions never become available.
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    # Internal topics are created on first use: few partitions make that quick (defaults: 50).
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.num.partitions": "4",
    "num.partitions": "4",
    "auto.create.topics.enable": "false",
    "group.initial.rebalance.delay.ms": "0",
    # After a SIGKILL the restarted node's registration is refused (DUPLICATE_BROKER_REGISTRATION) until
    # the old incarnation's session expires: default 9 s, so a kill-and-restart took 12 s instead of 3.
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "500",
    # Small machine: fewer threads, a small log-cleaner buffer (default 128 MiB of a modest heap).
    "num.network.threads": "2",
    "num.io.threads": "4",
    "num.recovery.threads.per.data.dir": "1",
    "background.threads": "4",
    "log.cleaner.threads": "1",
    "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
}

DEFAULT_JVM_OPTIONS: Sequence[str] = (
    "-Xms128m",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
    "-Dorg.slf4j.simpleLogger.log.kafka.request.logger=warn",
    "-Dorg.slf4j.simpleLogger.log.state.change.logger=warn",
)


class KafkaBroker:
    """One KRaft node (broker and controller) in a subprocess, on 127.0.0.1.

    Configuration is composed at every start from :data:`BASE_PROPERTIES`, the :attr:`listeners`
    mapping (``listeners``, ``advertised.listeners``, ``listener.security.protocol.map``,
    ``controller.quorum.voters`` are derived from it) and :attr:`extra_properties`, which win. Add a
    listener with :meth:`add_listener` before ``start()`` (or while stopped, for the next start);
    listener-specific keys such as ``listener.name.sasl_ssl.*`` go in ``extra_properties``.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        extra_properties: Mapping[str, str] | None = None,
        heap: str = "768m",
        jvm_options: Sequence[str] = (),
        cache_dir: Path | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self._owns_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="kafka-broker-")) if workdir is None else workdir
        self.workdir = self.workdir.resolve()
        self.listeners: dict[str, Listener] = {
            BROKER_LISTENER: Listener(BROKER_LISTENER, port or free_port()),
            CONTROLLER_LISTENER: Listener(
                CONTROLLER_LISTENER, controller_port or free_port(), advertised=False
            ),
        }
        self.extra_properties: dict[str, str] = dict(extra_properties or {})
        self.heap = heap
        self.jvm_options: list[str] = list(jvm_options)
        self.cache_dir = cache_dir
        self.start_timeout = start_timeout
        self.cluster_id = _new_cluster_id()
        self.last_start_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._lib_dir: Path | None = None

    # ---------------------------------------------------------------- configuration

    def add_listener(
        self,
        name: str,
        *,
        security_protocol: str,
        port: int | None = None,
        advertised: bool = True,
    ) -> Listener:
        """Add a client listener (e.g. ``SASL_SSL``); it takes effect at the next start."""
        name = name.upper()
        if name in self.listeners:
            raise ValueError(f"listener {name} exists already")
        listener = Listener(name, port or free_port(), security_protocol, advertised=advertised)
        self.listeners[name] = listener
        return listener

    def server_properties(self) -> dict[str, str]:
        """The full ``server.properties`` the next start will use."""
        listeners = self.listeners.values()
        controller = self.listeners[CONTROLLER_LISTENER]
        props = dict(BASE_PROPERTIES)
        props.update(
            {
                "listeners": ",".join(f"{lst.name}://{lst.address}" for lst in listeners),
                "advertised.listeners": ",".join(
                    f"{lst.name}://{lst.address}" for lst in listeners if lst.advertised
                ),
                "listener.security.protocol.map": ",".join(
                    f"{lst.name}:{lst.security_protocol}" for lst in listeners
                ),
                "controller.quorum.voters": f"{NODE_ID}@{controller.address}",
                "log.dirs": str(self.data_dir),
            }
        )
        props.update(self.extra_properties)
        return props

    # ---------------------------------------------------------------- paths and addresses

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        """The broker's stdout and stderr (appended to across restarts)."""
        return self.workdir / "broker.log"

    @property
    def properties_path(self) -> Path:
        return self.workdir / "server.properties"

    @property
    def port(self) -> int:
        return self.listeners[BROKER_LISTENER].port

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:<port>`` of the PLAINTEXT listener."""
        return self.listeners[BROKER_LISTENER].address

    def address(self, listener: str) -> str:
        """``host:port`` of a listener added with :meth:`add_listener`."""
        return self.listeners[listener.upper()].address

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        if self._proc is None:
            return False
        if self._proc.poll() is None:
            return True
        self._forget_process()  # it died on its own: reaped now, so its watchdog must go too
        return False

    @property
    def lib_dir(self) -> Path:
        if self._lib_dir is None:
            self._lib_dir = ensure_kafka_jars(self.cache_dir)
        return self._lib_dir

    @property
    def version(self) -> str:
        return kafka_version(self.lib_dir)

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of :attr:`log_path`."""
        return "\n".join(self._log_lines()[-lines:]) or "(no broker log yet)"

    def _log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def failure_report(self, errors: int = 20, tail: int = 15) -> str:
        """ERROR/FATAL lines and their causes from the latest run, then the log's tail: for error messages.

        The tail alone is mostly the shutdown that follows a fatal error; the cause is further up.
        """
        lines = self._log_lines()
        starts = [i for i, line in enumerate(lines) if line.startswith("=== ")]
        current = lines[starts[-1] :] if starts else lines
        problems = [
            line
            for line in current
            if " ERROR " in line
            or " FATAL " in line
            or line.startswith(("Caused by:", "Error:", "Exception"))
        ]
        parts = [f"broker log: {self.log_path}"]
        if problems:
            parts += ["--- errors in the latest run:", *problems[:errors]]
        parts += [f"--- last {tail} lines:", *lines[-tail:]]
        return "\n".join(parts)

    # ---------------------------------------------------------------- lifecycle

    def _java_command(self, main_class: str, *args: str, heap: str) -> list[str]:
        return [
            _java_executable(),
            f"-Xmx{heap}",
            *DEFAULT_JVM_OPTIONS,
            *self.jvm_options,
            "-cp",
            str(self.lib_dir / "*"),
            main_class,
            *args,
        ]

    def _write_properties(self) -> None:
        lines = [f"{key}={value}" for key, value in self.server_properties().items()]
        self.properties_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _format_storage(self) -> None:
        meta = self.data_dir / "meta.properties"
        if meta.is_file():  # formatted before (a restart, or a --workdir reused): keep its cluster id
            for line in meta.read_text(encoding="utf-8").splitlines():
                if line.startswith("cluster.id="):
                    self.cluster_id = line.removeprefix("cluster.id=").strip()
            return
        cmd = self._java_command(
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            self.cluster_id,
            "--config",
            str(self.properties_path),
            heap="256m",
        )
        with self.log_path.open("ab") as log:
            log.write(f"=== format: {' '.join(cmd)}\n".encode())
            log.flush()
            try:
                result = subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=_FORMAT_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise KafkaHarnessError(f"StorageTool format timed out; log {self.log_path}") from exc
        if result.returncode != 0:
            raise KafkaHarnessError(
                f"StorageTool format failed (exit {result.returncode})\n{self.failure_report()}"
            )

    def start(self) -> None:
        """Start the broker and block until it serves requests (or raise with the log's tail)."""
        if self.running:
            raise KafkaHarnessError("broker is already running")
        _ = self.lib_dir  # may download: not counted in the start timeout
        began = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_properties()
        self._format_storage()
        cmd = self._java_command("kafka.Kafka", str(self.properties_path), heap=self.heap)
        with self.log_path.open("ab") as log:
            log.write(f"=== start: {' '.join(cmd)}\n".encode())
            log.flush()
            # Own session: a Ctrl-C in the terminal reaches Python, which stops the broker in order.
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        self._watchdog = _spawn_watchdog(self._proc.pid)
        _LIVE.add(self)
        try:
            self._wait_ready(began + self.start_timeout)
        except BaseException:
            self.kill()
            raise
        self.last_start_seconds = time.monotonic() - began

    def _wait_ready(self, deadline: float) -> None:
        proc = self._proc
        assert proc is not None
        last_error: Exception | None = None
        while True:
            if proc.poll() is not None:
                raise KafkaHarnessError(
                    f"broker exited with code {proc.returncode} during start\n{self.failure_report()}"
                )
            try:
                if NODE_ID in metadata_broker_ids(HOST, self.port):
                    return
                last_error = None
            except (OSError, struct.error) as exc:
                last_error = exc
            if time.monotonic() >= deadline:
                raise KafkaHarnessError(
                    f"broker not serving on {self.bootstrap_servers} after {self.start_timeout:.0f} s "
                    f"(last probe: {last_error or 'node not in metadata yet'})\n{self.failure_report()}"
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=_POLL_INTERVAL_S)  # a pause that also notices an early exit

    def _forget_process(self) -> None:
        if self._watchdog is not None:
            _end_watchdog(self._watchdog)
            self._watchdog = None
        self._proc = None
        _LIVE.discard(self)

    def stop(self, timeout: float = _STOP_TIMEOUT_S) -> None:
        """SIGTERM (controlled shutdown) and wait; SIGKILL if it takes longer than ``timeout``."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._forget_process()

    def kill(self) -> None:
        """SIGKILL, as a crash would: no controlled shutdown, no flush beyond what the OS already has."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        self._forget_process()

    def restart(self) -> None:
        """Stop if running, then start again on the same ports and data (after ``kill()`` too)."""
        self.stop()
        self.start()

    def wait(self) -> int:
        """Block until the broker process exits; its exit code."""
        if self._proc is None:
            raise KafkaHarnessError("broker is not running")
        return self._proc.wait()

    def close(self) -> None:
        """Stop, and remove the work directory if this object made it."""
        self.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<KafkaBroker {self.bootstrap_servers} {state} workdir={self.workdir}>"


# ------------------------------------------------------------------------------------------- CLI


def _cmd_fetch(args: argparse.Namespace) -> int:
    began = time.monotonic()
    lib = ensure_kafka_jars(args.cache_dir)
    print(lib)
    print(f"Kafka {kafka_version(lib)} ready in {time.monotonic() - began:.1f} s", file=sys.stderr)
    return 0


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    raise KeyboardInterrupt


def _cmd_run(args: argparse.Namespace) -> int:
    workdir: Path | None = args.workdir
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    broker = KafkaBroker(workdir, port=args.port, cache_dir=args.cache_dir)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    signal.signal(signal.SIGINT, _raise_keyboard_interrupt)  # also when started with SIGINT ignored
    try:
        broker.start()
        print(broker.bootstrap_servers, flush=True)
        print(
            f"Kafka {broker.version} serving on {broker.bootstrap_servers} (started in "
            f"{broker.last_start_seconds:.1f} s); log {broker.log_path}; Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        code = broker.wait()
    except KeyboardInterrupt:
        print("stopping the broker", file=sys.stderr, flush=True)
        return 0
    finally:
        if workdir is None:
            broker.close()
        else:
            broker.stop()
    print(f"broker exited with code {code}\n{broker.failure_report()}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.kafka_broker", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help=f"jar cache (default: ${CACHE_ENV} or .cache/kafka)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download the broker's jars into the cache and exit")
    run = sub.add_parser("run", help="run a broker in the foreground until Ctrl-C or SIGTERM")
    run.add_argument("--port", type=int, default=None, help="PLAINTEXT port (default: a free one)")
    run.add_argument(
        "--workdir", type=Path, default=None, help="keep data here (default: a temporary directory)"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            return _cmd_fetch(args)
        return _cmd_run(args)
    except KafkaHarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
