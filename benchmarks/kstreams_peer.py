"""The Kafka Streams peer (benchmarks/kstreams/): built with Maven into a cache, run as a process.

`python -m benchmarks.kstreams_peer build` builds it (scripts/bootstrap does, so a CI run finds it
built; the benchmark section builds it too when it is missing). The build lands in
`<repo>/.cache/kstreams/build-<hash>` (`NOTIFIER_KSTREAMS_CACHE` overrides the cache), where <hash>
covers the POM and every source file, so an edit builds afresh and an unchanged module is never
rebuilt; a marker written last tells a finished build from an interrupted one, and a lock keeps
two callers from building at once (as devtools/kafka_jars.py does for the broker's jars).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from devtools.kafka_jars import KafkaHarnessError, java_executable

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "benchmarks" / "kstreams"
CACHE_ENV = "NOTIFIER_KSTREAMS_CACHE"
MAIN_CLASS = "notifier.peer.RoundsApp"
_MARKER = ".complete"
_MVN_TIMEOUT_S = 900.0
# Heap fixed rather than a quarter of the machine's memory: the same on every machine.
JVM_OPTIONS = (
    "-Xms512m",
    "-Xmx2g",
    "-XX:+UseG1GC",
    # Warnings only, plus the effective client configs (what the README says is set), once at start.
    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.streams.StreamsConfig=info",
    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients.producer.ProducerConfig=info",
    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients.consumer.ConsumerConfig=info",
)


def _digest() -> str:
    sha = hashlib.sha256()
    for path in sorted([MODULE / "pom.xml", *(MODULE / "src").rglob("*")]):
        if path.is_file():
            sha.update(str(path.relative_to(MODULE)).encode())
            sha.update(path.read_bytes())
    return sha.hexdigest()[:16]


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser().resolve() if env else REPO / ".cache" / "kstreams"


@dataclass(frozen=True)
class Build:
    directory: Path
    built_now: bool
    seconds: float

    @property
    def classpath(self) -> str:
        return f"{self.directory / 'kstreams-peer.jar'}:{self.directory / 'lib'}/*"


def ensure_built() -> Build:
    """The peer's build directory, building it with `mvn package` first if this version is not cached."""
    started = time.monotonic()
    cache = cache_dir()
    digest = _digest()
    target = cache / f"build-{digest}"
    if (target / _MARKER).is_file():
        return Build(target, built_now=False, seconds=0.0)
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaHarnessError("mvn not found on PATH: the Kafka Streams peer is built with Maven")
    java_executable()
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / _MARKER).is_file():
            return Build(target, built_now=False, seconds=time.monotonic() - started)
        _build(mvn, cache, target, digest)
        for stale in [*cache.glob("build-*"), *cache.glob("staging-*")]:
            if stale != target and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
    return Build(target, built_now=True, seconds=time.monotonic() - started)


def _build(mvn: str, cache: Path, target: Path, digest: str) -> None:
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=cache))
    try:
        out = staging / "build"
        cmd = [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(MODULE / "pom.xml"),
            "package",
            f"-Dpeer.build.dir={out}",
        ]
        try:
            result = subprocess.run(  # noqa: S603 - mvn from PATH, our own arguments
                cmd, capture_output=True, text=True, timeout=_MVN_TIMEOUT_S, check=False, cwd=staging
            )
        except subprocess.TimeoutExpired as exc:
            raise KafkaHarnessError(f"mvn did not finish in {_MVN_TIMEOUT_S:.0f} s: {' '.join(cmd)}") from exc
        if result.returncode != 0 or not (out / "kstreams-peer.jar").is_file():
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-40:])
            raise KafkaHarnessError(f"building the Kafka Streams peer failed:\n{' '.join(cmd)}\n{tail}")
        (out / _MARKER).write_text(f"{digest}\n", encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        out.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@dataclass
class Peer:
    """One running instance of the peer; `states` holds each (state, epoch ms) it reported."""

    process: asyncio.subprocess.Process
    log_path: Path
    spawned_ms: int
    states: list[tuple[str, int]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    async def _read_states(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            parts = line.decode(errors="replace").split()
            if len(parts) == 3 and parts[0] == "STATE":
                self.states.append((parts[1], int(parts[2])))
                self._changed.set()
        self._changed.set()

    def alive(self) -> bool:
        return self.process.returncode is None

    async def wait_state(self, state: str, timeout: float) -> int:  # noqa: ASYNC109 - bounds a wait
        """Epoch ms of the first time the peer reported `state`; fails if it exits or times out."""
        deadline = time.monotonic() + timeout
        while True:
            for name, at in self.states:
                if name == state:
                    return at
            if not self.alive() or (self._reader is not None and self._reader.done()):
                raise RuntimeError(f"the Kafka Streams peer exited before {state}; see {self.log_path}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the Kafka Streams peer did not reach {state} in {timeout}s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def stop(self) -> None:
        """SIGTERM (the app closes Streams cleanly: commit, checkpoint), SIGKILL after 30 s."""
        if self.alive():
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


async def start_peer(build: Build, log_path: Path, **options: str | int) -> Peer:
    """Start `RoundsApp` with `key=value` options (bootstrap, application_id, input, missed, chatbot,
    state_dir, default_tta_s, punctuate_ms, streams.<setting>); its stderr goes to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        spawned_ms = time.time_ns() // 1_000_000
        process = await asyncio.create_subprocess_exec(
            java_executable(),
            *JVM_OPTIONS,
            "-cp",
            build.classpath,
            MAIN_CLASS,
            *(f"{key}={value}" for key, value in options.items()),
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    peer = Peer(process, log_path, spawned_ms)
    peer._reader = asyncio.create_task(peer._read_states())  # noqa: SLF001 - its own factory
    return peer


def main() -> None:
    if sys.argv[1:] == ["build"]:
        build = ensure_built()
        verb = f"built in {build.seconds:.1f} s" if build.built_now else "already built"
        print(f"Kafka Streams peer {verb}: {build.directory}")
        return
    raise SystemExit("usage: python -m benchmarks.kstreams_peer build")


if __name__ == "__main__":
    main()
