"""The HTTP server SREs and Kubernetes talk to. It serves exactly three paths; anything else is 404.

`/healthz` says whether the process is alive and its tasks are running (a liveness probe must
not fail just because Kafka is away — restarting would not help). `/readyz` says whether the
worker can do its job right now: directories loaded, partitions assigned, restored and fetching,
push credentials accepted by the providers. `/metrics` is prometheus-client's own aiohttp handler
over the worker's registry: Prometheus text or OpenMetrics as the scraper's `Accept` asks, gzip when
its `Accept-Encoding` allows, and `name[]` filters.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.registry import Collector


@dataclass(frozen=True, slots=True)
class Probe:
    """A named check; `check()` returns True when fine."""

    name: str
    check: Callable[[], bool]


def build_app(registry: Collector, liveness: list[Probe], readiness: list[Probe]) -> web.Application:
    def probe_handler(probes: list[Probe]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(_: web.Request) -> web.Response:
            results = {probe.name: probe.check() for probe in probes}
            ok = all(results.values())
            return web.json_response({"ok": ok, "checks": results}, status=200 if ok else 503)

        return handler

    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    app.router.add_get("/healthz", probe_handler(liveness))
    app.router.add_get("/readyz", probe_handler(readiness))
    return app


async def start_http(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (for cleanup) and the bound port (useful with port 0)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    addresses = runner.addresses  # (host, port, ...) of each listening socket
    return runner, int(addresses[0][1]) if addresses else port
