"""The benchmark suite at smoke size: proves the suite runs end to end and writes its outputs.

It fails when the suite breaks (a section raises, an output is missing or malformed), never on
timings: the numbers of a smoke run on a shared CI machine mean nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECTIONS = (
    "throughput",
    "deadlines",
    "restore",
    "capacity",
    "push",
    "latency",
    "timers",
    "kafka_streams",
    "directory",
    "missed_e2e",
    "fanout_cpu",
)


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.timeout(420)  # the whole suite at smoke size; 240 before the #13 sections
def test_suite_runs_at_smoke_size_and_writes_json_png_and_table(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--scale", "smoke", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    for name in SECTIONS:
        assert name in results, name
        assert "error" not in results[name], results[name]
    assert results["throughput"]["worker"]["events_per_s"] > 0
    assert results["throughput"]["bare_loop"]["events_per_s"] > 0
    assert results["deadlines"]["missed_received"] == results["deadlines"]["missed_expected"] > 0
    assert results["capacity"]["pending_rounds_held"] == results["restore"]["rounds"]
    assert results["latency"]["pushes_received"] == results["latency"]["pushes_expected"] > 0
    for provider in ("fcm", "apns"):
        assert results["push"][provider]["sender"]["failures"] == 0
    # FCM over TLS (#13): every client delivered, the official one over HTTP/2, ours over HTTP/1.1.
    fcm_tls = results["push"]["fcm_tls"]
    for contender in ("sender", "official_client", "bare_aiohttp", "bare_httpx_h2"):
        assert fcm_tls[contender]["failures"] == 0, contender
        assert fcm_tls[contender]["tls_handshakes"] > 0, contender
    assert fcm_tls["official_client"]["h2_requests"] > 0
    assert all(fcm_tls["plain_http"][c]["failures"] == 0 for c in ("sender", "official_client"))
    assert fcm_tls["sender"]["h2_requests"] == 0
    # Timers (#13): both designs measured, and every due round of the worker's fired.
    for design in ("apscheduler", "worker"):
        assert results["timers"][design]["adds_per_s"] > 0, design
        assert results["timers"][design]["traced_bytes_per_round"] > 0, design
    assert results["timers"]["worker"]["fired"] == results["timers"]["worker"]["fired_expected"] > 0
    assert results["timers"]["worker"]["burst_fired"] == results["timers"]["size"]["burst"]
    # Kafka Streams peer (#13): both contenders measured on every figure; every expired round gave
    # exactly one Missed and one chatbot record, on both sides.
    peer = results["kafka_streams"]
    for side in ("worker", "kafka_streams"):
        assert peer["throughput"][side]["events_per_s"] > 0, side
        lateness = peer["lateness"][side]
        assert (
            lateness["missed_received"] == lateness["missed_expected"] == lateness["chatbot_received"] > 0
        ), side
        assert lateness["missed_duplicates"] == lateness["chatbot_duplicates"] == 0, side
        assert lateness["missed_topic_log_append_time"], side
        assert peer["restore"][side]["spawn_to_processing_s"] > 0, side
    # Directory scale (#13): every agent loaded, and a lookup's targets are its account's devices.
    directory = results["directory"]
    assert directory["directory_rss_bytes_per_agent"] > 0
    assert directory["start_to_ready_s"] > 0
    for population in ("large", "small"):
        by_size = directory["lookup"][population]["by_account_size"]
        assert (
            0 < by_size["10"]["targets"] <= 20 < by_size["50"]["targets"] <= 100 < by_size["1000"]["targets"]
        )
    # Worker CPU per push (#13) and Missed at a downstream consumer (#13): every Missed arrived.
    assert results["latency"]["worker_cpu_us_per_push"] > 0
    assert results["fanout_cpu"]["pushes_delivered"] == results["fanout_cpu"]["pushes_expected"] > 0
    assert results["fanout_cpu"]["worker_cpu_us_per_push"] > 0
    for phase in ("after_backlog", "half_rate"):
        missed = results["missed_e2e"][phase]
        assert missed["missed_received"] == missed["missed_expected"] > 0, phase
        assert missed["at_consumer"]["p50_ms"] >= missed["in_worker"]["p50_ms"], phase
    figures = [row["figure"] for row in results["summary"]]
    # issue #6's; #13: 4 timer, 3 FCM-over-TLS, 3 Kafka Streams, 3 directory, 2 worker CPU, 2 Missed e2e
    assert len(figures) == 10 + 7 + 3 + 7
    assert all(row["ratio"] is not None for row in results["summary"] if "scale-out" in row["figure"])
    assert (out / "results.png").read_bytes().startswith(b"\x89PNG")
    table = (out / "table.md").read_text()
    assert table.count("\n|") == len(figures) + 1
    assert "event throughput" in run.stdout
