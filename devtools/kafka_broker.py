"""A real single-node Apache Kafka broker for tests and local runs, without Docker.

:class:`KafkaBroker` runs one KRaft node that is both broker and controller (``java -cp ... kafka.Kafka``,
after ``kafka.tools.StorageTool format`` on first start) on free ports of 127.0.0.1, from the jars
:mod:`devtools.kafka_jars` fetches and with the settings of :mod:`devtools.kafka_node_config`.
``start()`` returns only once the broker lists itself in a Metadata response, that is once it is
registered and unfenced and answers clients.

Command line (:mod:`devtools.kafka_broker_cli`)::

    python -m devtools.kafka_broker fetch                   # download the jars only
    python -m devtools.kafka_broker run [--port N] [--workdir D]   # run in the foreground until Ctrl-C
"""

from __future__ import annotations

import contextlib
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from devtools.kafka_jars import (
    KafkaHarnessError,
    ensure_kafka_jars,
    java_executable,
    kafka_version,
)
from devtools.kafka_node_config import (
    BROKER_LISTENER,
    CONTROLLER_LISTENER,
    DEFAULT_JVM_OPTIONS,
    NODE_ID,
    Listener,
    compose_server_properties,
)
from devtools.kafka_process import (
    HOST,
    end_watchdog,
    forget_at_exit,
    free_port,
    kill_at_exit,
    metadata_broker_ids,
    new_cluster_id,
    spawn_watchdog,
)

_FORMAT_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 30.0
_POLL_INTERVAL_S = 0.1


class KafkaBroker:
    """One KRaft node (broker and controller) in a subprocess, on 127.0.0.1.

    Configuration is composed at every start from :data:`~devtools.kafka_node_config.BASE_PROPERTIES`,
    the :attr:`listeners` mapping (``listeners``, ``advertised.listeners``,
    ``listener.security.protocol.map``, ``controller.quorum.voters`` are derived from it) and
    :attr:`extra_properties`, which win. Add a listener with :meth:`add_listener` before ``start()`` (or
    while stopped, for the next start); listener-specific keys such as ``listener.name.sasl_ssl.*`` go in
    ``extra_properties``.
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
        self.cluster_id = new_cluster_id()
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
        return compose_server_properties(self.listeners, self.data_dir, self.extra_properties)

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
            java_executable(),
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
        self._watchdog = spawn_watchdog(self._proc.pid)
        kill_at_exit(self)
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
            end_watchdog(self._watchdog)
            self._watchdog = None
        self._proc = None
        forget_at_exit(self)

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


if __name__ == "__main__":
    # The command line lives in its own module; it imports this one again as devtools.kafka_broker.
    from devtools.kafka_broker_cli import main

    sys.exit(main())
