"""The Kafka broker's classpath, fetched from Maven Central into a cache, and the ``java`` that runs it.

``devtools/kafka/pom.xml`` names ``org.apache.kafka:kafka_2.13`` and ``mvn dependency:copy-dependencies``
copies it and its runtime dependencies into a cache directory (``<repo>/.cache/kafka`` unless
``NOTIFIER_KAFKA_CACHE`` says otherwise). :func:`ensure_kafka_jars` does that once per version of the POM;
:class:`~devtools.kafka_broker.KafkaBroker` runs ``java -cp '<that directory>/*'``. This module also holds
:class:`KafkaHarnessError`, the one error the broker harness raises.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
POM_PATH = Path(__file__).resolve().parent / "kafka" / "pom.xml"
CACHE_ENV = "NOTIFIER_KAFKA_CACHE"
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "kafka"

_MARKER = ".complete"
_MVN_TIMEOUT_S = 900.0


class KafkaHarnessError(RuntimeError):
    """The broker harness could not do what was asked (missing tool, failed download, broker down)."""


def default_cache_dir() -> Path:
    """``$NOTIFIER_KAFKA_CACHE`` if set, else ``<repo>/.cache/kafka``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser().resolve() if env else DEFAULT_CACHE_DIR


def _pom_digest() -> str:
    return hashlib.sha256(POM_PATH.read_bytes()).hexdigest()[:16]


def java_executable() -> str:
    """``$JAVA_HOME/bin/java`` if that exists, else ``java`` from PATH (raise if neither)."""
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
    java_executable()

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
