"""The image's install and entrypoint steps work, checked without a container engine.

The Dockerfile's build stage is replayed here: its COPY instructions lay out a build context in a
temporary directory (only what .dockerignore lets through), and its RUN instructions — which may
only call deploy/docker/build-venv.sh — run with /opt/venv and /src moved into that directory.
The resulting virtualenv then starts the runtime stage's ENTRYPOINT + CMD as the image would.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.credentials import generate_credentials
from tests.contract.chart import REPO

DOCKERFILE = REPO / "Dockerfile"


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    arguments: str


def _instructions() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        keyword, _, arguments = pending.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def _stages() -> tuple[str, list[Instruction], list[Instruction]]:
    """(default base image, build-stage instructions, runtime-stage instructions)."""
    instructions = _instructions()
    (base_arg,) = [i for i in instructions[:1] if i.keyword == "ARG"]
    _, _, base_image = base_arg.arguments.partition("=")
    starts = [index for index, i in enumerate(instructions) if i.keyword == "FROM"]
    assert len(starts) == 2, "expected a build stage and a runtime stage"
    assert instructions[starts[0]].arguments == "${PYTHON_IMAGE} AS build"
    assert instructions[starts[1]].arguments == "${PYTHON_IMAGE}", "both stages on the same base image"
    return base_image, instructions[starts[0] + 1 : starts[1]], instructions[starts[1] + 1 :]


def _allowed_by_dockerignore(path: str) -> bool:
    """The .dockerignore is an allow-list: `*` then `!path` lines."""
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*", ".dockerignore should start by excluding everything"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    return path.rstrip("/") in allowed


def _build_venv(root: Path) -> Path:
    """Replay the build stage under `root`; return the virtualenv (the image's /opt/venv)."""
    _, build, _ = _stages()
    context = root / "src"
    venv = root / "opt" / "venv"
    workdir: Path | None = None
    for instruction in build:
        if instruction.keyword == "ENV":
            continue  # pip's cache and version-check switches: no effect on what gets installed
        if instruction.keyword == "WORKDIR":
            assert instruction.arguments == "/src"
            workdir = context
            workdir.mkdir(parents=True)
        elif instruction.keyword == "COPY":
            *sources, destination = shlex.split(instruction.arguments)
            assert workdir is not None
            assert destination.endswith("/"), (
                "COPY into directories only (as Docker: files by name, dirs' contents)"
            )
            for source in sources:
                assert _allowed_by_dockerignore(source), f"COPY {source}: excluded by .dockerignore"
                origin, target = REPO / source, workdir / destination
                if origin.is_dir():
                    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                    shutil.copytree(origin, target, ignore=ignore, dirs_exist_ok=True)
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, target / origin.name)
        elif instruction.keyword == "RUN":
            words = shlex.split(instruction.arguments)
            assert words[:2] == ["sh", "build-venv.sh"], (
                f"RUN {instruction.arguments!r}: only build-venv.sh steps are replayed here"
            )
            words = [str(venv) if w == "/opt/venv" else str(context) if w == "/src" else w for w in words]
            subprocess.run(
                words,
                cwd=workdir,
                env=os.environ | {"PYTHON": sys.executable},
                check=True,
                timeout=900,
            )
        else:
            pytest.fail(f"build stage: {instruction.keyword} is not replayed by this test; teach it")
    return venv


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_venv(tmp_path_factory.mktemp("image"))


def _entrypoint(
    venv: Path, *args: str, environment: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the runtime stage's ENTRYPOINT with `args` (replacing CMD), with the image's PATH."""
    _, _, runtime = _stages()
    (entrypoint,) = [json.loads(i.arguments) for i in runtime if i.keyword == "ENTRYPOINT"]
    clean = {
        key: value for key, value in os.environ.items() if not key.startswith(("NOTIFIER_", "VIRTUAL_ENV"))
    }
    path = f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin"
    command = [shutil.which(entrypoint[0], path=path) or entrypoint[0], *entrypoint[1:], *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd="/",
        env=clean | {"PATH": path} | (environment or {}),
    )


def test_base_image_matches_the_python_that_ci_builds_with() -> None:
    base_image, _, _ = _stages()
    match = re.fullmatch(r"python:(\d+)\.(\d+)\.\d+-slim-\w+", base_image)
    assert match, f"base image {base_image!r} should be an exact python:X.Y.Z-slim-<debian> tag"
    assert (int(match[1]), int(match[2])) == sys.version_info[:2]


def test_runtime_stage_is_unprivileged_and_starts_the_worker() -> None:
    _, _, runtime = _stages()
    keywords = [i.keyword for i in runtime]
    assert "HEALTHCHECK" not in keywords
    (user,) = [i.arguments for i in runtime if i.keyword == "USER"]
    uid, _, gid = user.partition(":")
    assert int(uid) > 0
    assert int(gid) > 0
    assert [json.loads(i.arguments) for i in runtime if i.keyword == "ENTRYPOINT"] == [["livechat-notifier"]]
    assert [json.loads(i.arguments) for i in runtime if i.keyword == "CMD"] == [["run"]]
    assert [i.arguments for i in runtime if i.keyword == "COPY"] == ["--from=build /opt/venv /opt/venv"]


def test_lock_pins_what_pyproject_pins() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    lock = (REPO / "requirements.lock").read_text()
    locked = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", lock, flags=re.MULTILINE))
    locked = {name.lower().replace("_", "-"): version for name, version in locked.items()}
    for requirement in pyproject["project"]["dependencies"]:
        name, _, version = re.sub(r"\[.*\]", "", requirement).partition("==")
        assert locked.get(name.lower()) == version, f"requirements.lock: {name} should be {version}"
    build_requires = pyproject["build-system"]["requires"]
    assert build_requires == ["setuptools>=75"]
    assert int(locked["setuptools"].split(".")[0]) >= 75


@pytest.mark.slow
def test_entrypoint_runs_from_the_image_virtualenv(image_venv: Path) -> None:
    result = _entrypoint(image_venv, "run", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: livechat-notifier run")
    # Only the runtime dependencies: the test tools are not in the image.
    assert not (image_venv / "bin" / "pytest").exists()


@pytest.mark.slow
def test_check_config_in_the_image_virtualenv(image_venv: Path, tmp_path: Path) -> None:
    minimal = _entrypoint(
        image_venv, "check-config", environment={"NOTIFIER_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"}
    )
    assert minimal.returncode == 0, minimal.stderr
    assert '"config_ok"' in minimal.stdout

    credentials = generate_credentials(tmp_path, fcm_token_uri="https://oauth2.googleapis.com/token")
    with_push = {
        "NOTIFIER_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
        "NOTIFIER_FCM_CREDENTIALS_FILE": str(credentials.fcm_service_account),
        "NOTIFIER_APNS_KEY_FILE": str(credentials.apns_key),
        "NOTIFIER_APNS_KEY_ID": credentials.apns_key_id,
        "NOTIFIER_APNS_TEAM_ID": credentials.apns_team_id,
        "NOTIFIER_APNS_TOPIC": "com.example.livechat",
    }
    assert _entrypoint(image_venv, "check-config", environment=with_push).returncode == 0

    (tmp_path / "broken.json").write_text('{"type": "service_account"}')
    broken = _entrypoint(
        image_venv,
        "check-config",
        environment=with_push | {"NOTIFIER_FCM_CREDENTIALS_FILE": str(tmp_path / "broken.json")},
    )
    assert broken.returncode == 2
    assert "NOTIFIER_FCM_CREDENTIALS_FILE" in broken.stderr
