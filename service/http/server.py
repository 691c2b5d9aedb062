"""The HTTP server SREs and Kubernetes talk to. It serves exactly three paths; anything else is 404.

`/healthz` says whether the process is alive and its tasks are running (a liveness probe must
not fail just because Kafka is away — restarting would not help). `/readyz` says whether the
worker can do its job right now: directories loaded, partitions assigned, restored and fetching,
push credentials accepted by the providers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from service.observability.metrics import Metrics


@dataclass(frozen=True, slots=True)
class Probe:
    """A named check; `check()` returns True when fine."""

    name: str
    check: Callable[[], bool]


def build_app(metrics: Metrics, liveness: list[Probe], readiness: list[Probe]) -> web.Application:
    async def metrics_handler(_: web.Request) -> web.Response:
        body = metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def probe_handler(probes: list[Probe]) -> Callable[[web.Request], object]:
        async def handler(_: web.Request) -> web.Response:
            results = {probe.name: probe.check() for probe in probes}
            ok = all(results.values())
            return web.json_response({"ok": ok, "checks": results}, status=200 if ok else 503)

        return handler

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", probe_handler(liveness))  # type: ignore[arg-type]
    app.router.add_get("/readyz", probe_handler(readiness))  # type: ignore[arg-type]
    return app


async def start_http(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (for cleanup) and the bound port (useful with port 0)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server  # noqa: SLF001 -- aiohttp exposes the bound socket only here
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, int(bound)
