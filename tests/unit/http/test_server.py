"""The HTTP endpoints through pytest-aiohttp's test client: probes, /metrics negotiation, nothing else."""

from __future__ import annotations

import gzip
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry, Counter

from service.http.server import Probe, build_app

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    Counter("notifier_things_total", "Things", ["outcome"], registry=registry).labels("done").inc(2)
    return registry


@pytest.fixture
async def client(aiohttp_client: MakeClient, registry: CollectorRegistry) -> Client:
    app = build_app(
        registry,
        liveness=[Probe("tasks_running", lambda: True)],
        readiness=[Probe("directories_loaded", lambda: True), Probe("partitions_restored", lambda: False)],
    )
    return await aiohttp_client(app)


async def test_probes_answer_with_their_checks(client: Client) -> None:
    live = await client.get("/healthz")
    assert live.status == 200
    assert await live.json() == {"ok": True, "checks": {"tasks_running": True}}
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert await ready.json() == {
        "ok": False,
        "checks": {"directories_loaded": True, "partitions_restored": False},
    }


async def test_nothing_else_is_served(client: Client) -> None:
    for path in ("/", "/admin", "/metrics/x"):
        assert (await client.get(path)).status == 404
    assert (await client.post("/metrics")).status == 405


async def test_metrics_default_to_the_prometheus_text_format(client: Client) -> None:
    response = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'notifier_things_total{outcome="done"} 2.0' in await response.text()


async def test_metrics_in_openmetrics_when_the_scraper_asks(client: Client) -> None:
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    response = await client.get("/metrics", headers={"Accept": accept, "Accept-Encoding": "identity"})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    text = await response.text()
    assert 'notifier_things_total{outcome="done"} 2.0' in text
    assert text.endswith("# EOF\n")


async def test_metrics_gzipped_when_the_scraper_accepts_it(client: Client) -> None:
    response = await client.get("/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    body = gzip.decompress(await response.read()).decode()
    assert 'notifier_things_total{outcome="done"} 2.0' in body


async def test_metrics_filtered_by_name(client: Client, registry: CollectorRegistry) -> None:
    Counter("notifier_other_total", "Other", registry=registry).inc()
    response = await client.get("/metrics", params={"name[]": "notifier_other_total"})
    text = await response.text()
    assert "notifier_other_total 1.0" in text
    assert "notifier_things_total" not in text
