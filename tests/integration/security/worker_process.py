"""The worker as Kubernetes runs it: `python -m service --config <file> run` in a subprocess, with every
byte it writes to stdout and stderr kept for the test to read."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from aiohttp import ClientError, ClientSession, ClientTimeout

REPO_ROOT = Path(__file__).resolve().parents[3]


class WorkerProcess:
    def __init__(self, settings: dict[str, Any], directory: Path) -> None:
        self.settings = settings
        self.config_file = directory / "notifier.yaml"
        self.stdout = bytearray()
        self.stderr = bytearray()
        self._proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.settings['http_port']}"

    @property
    def output(self) -> str:
        """Everything written so far, stdout then stderr."""
        return (bytes(self.stdout) + bytes(self.stderr)).decode(errors="replace")

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    async def start(self) -> None:
        self.config_file.write_text(yaml.safe_dump(self.settings))
        env = {key: value for key, value in os.environ.items() if not key.startswith("NOTIFIER_")}
        env["PYTHONUNBUFFERED"] = "1"
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "service",
            "--config",
            str(self.config_file),
            "run",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=REPO_ROOT,
            env=env,
        )
        assert self._proc.stdout is not None
        assert self._proc.stderr is not None
        self._readers = [
            asyncio.create_task(_drain(self._proc.stdout, self.stdout)),
            asyncio.create_task(_drain(self._proc.stderr, self.stderr)),
        ]

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Until `/readyz` answers 200; fail at once if the process exits instead."""
        deadline = time.monotonic() + timeout
        async with ClientSession(timeout=ClientTimeout(total=2)) as http:
            while True:
                if self.returncode is not None:
                    await self.wait_exit(5)
                    raise AssertionError(f"worker exited with {self.returncode} during start:\n{self.output}")
                try:
                    async with http.get(f"{self.http_base}/readyz") as response:
                        if response.status == 200:
                            return
                except (ClientError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"worker not ready after {timeout} s:\n{self.output}")
                await asyncio.sleep(0.05)

    async def metrics(self) -> str:
        async with ClientSession() as http, http.get(f"{self.http_base}/metrics") as response:
            assert response.status == 200
            return await response.text()

    async def wait_exit(self, timeout: float) -> int:
        """The exit code, once the process ended and its output is read to the end."""
        assert self._proc is not None
        code = await asyncio.wait_for(self._proc.wait(), timeout)
        await asyncio.wait_for(asyncio.gather(*self._readers), timeout)
        return code

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as Kubernetes stops a pod, and wait for the exit code."""
        assert self._proc is not None
        if self._proc.returncode is None:
            self._proc.send_signal(signal.SIGTERM)
        return await self.wait_exit(timeout)

    async def kill(self) -> None:
        """Clean-up after a failed test: SIGKILL this process if it still runs."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


async def _drain(stream: asyncio.StreamReader, sink: bytearray) -> None:
    while chunk := await stream.read(65536):
        sink.extend(chunk)
