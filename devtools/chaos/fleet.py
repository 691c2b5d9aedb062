"""Worker processes under the controller's hand: start, SIGKILL, SIGTERM, SIGSTOP/SIGCONT."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import ClientError, ClientSession

from devtools.kafka_process import free_port
from service.settings import Settings


def worker_env(settings: Settings) -> dict[str, str]:
    """The NOTIFIER_* variables that configure a worker process exactly like `settings`."""
    return {
        f"NOTIFIER_{key.upper()}": str(value)
        for key, value in settings.model_dump().items()
        if value is not None and key not in {"http_host", "http_port"}
    }


@dataclass
class Worker:
    name: str
    process: asyncio.subprocess.Process
    http_port: int
    log_path: Path
    paused: bool = False


@dataclass
class Fleet:
    env: dict[str, str]
    log_dir: Path
    workers: dict[str, Worker] = field(default_factory=dict)
    started: int = 0
    exit_codes: list[int] = field(default_factory=list)
    unexpected_exits: list[tuple[str, int]] = field(default_factory=list)
    """Workers that exited on their own (e.g. Kafka unreachable at start-up) and were restarted,
    as Kubernetes would restart them."""

    async def start(self, name: str) -> Worker:
        self.started += 1
        port = free_port()
        log_path = self.log_dir / f"{name}-{self.started:03d}.log"
        env = os.environ | self.env | {"NOTIFIER_HTTP_PORT": str(port), "NOTIFIER_HTTP_HOST": "127.0.0.1"}
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "service",
                "run",
                env=env,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
            )
        worker = Worker(name, process, port, log_path)
        self.workers[name] = worker
        return worker

    async def supervise(self) -> None:
        """Restart workers that exit on their own, like a Deployment's pod restarts (runs forever)."""
        while True:
            for name, worker in list(self.workers.items()):
                if worker.process.returncode is not None and self.workers.get(name) is worker:
                    self.unexpected_exits.append((name, worker.process.returncode))
                    await self.start(name)
            await asyncio.sleep(1.0)

    async def kill(self, name: str) -> None:
        worker = self.workers.pop(name)
        if worker.process.returncode is None:
            worker.process.send_signal(signal.SIGKILL)
        self.exit_codes.append(await worker.process.wait())

    async def terminate(self, name: str, timeout: float = 30.0) -> int:  # noqa: ASYNC109
        """SIGTERM; returns the exit code (the worker must leave within its grace period)."""
        worker = self.workers.pop(name)
        if worker.process.returncode is not None:
            return worker.process.returncode
        if worker.paused:
            worker.process.send_signal(signal.SIGCONT)
        worker.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(worker.process.wait(), timeout)
        except TimeoutError:
            worker.process.send_signal(signal.SIGKILL)
            code = -999
        self.exit_codes.append(code)
        return code

    def pause(self, name: str) -> None:
        self.workers[name].process.send_signal(signal.SIGSTOP)
        self.workers[name].paused = True

    def resume(self, name: str) -> None:
        self.workers[name].process.send_signal(signal.SIGCONT)
        self.workers[name].paused = False

    async def ready(self, name: str) -> bool:
        worker = self.workers.get(name)
        if worker is None or worker.process.returncode is not None:
            return False
        try:
            async with (
                ClientSession() as http,
                http.get(f"http://127.0.0.1:{worker.http_port}/readyz") as response,
            ):
                return response.status == 200
        except (ClientError, OSError):
            return False

    async def wait_ready(self, name: str, timeout: float = 90.0) -> None:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        while not await self.ready(name):
            worker = self.workers.get(name)
            if worker is not None and worker.process.returncode is not None:
                raise RuntimeError(
                    f"worker {name} exited with {worker.process.returncode}; see {worker.log_path}"
                )
            if loop.time() > give_up:
                raise TimeoutError(f"worker {name} not ready after {timeout}s")
            await asyncio.sleep(0.2)

    async def stop_all(self) -> None:
        for name in list(self.workers):
            await self.terminate(name)
