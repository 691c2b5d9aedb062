"""The benchmark report's push rows and plot: the bare baseline decides, the official client is shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.report import evaluate, render_table, write_plot


def contender(cpu_us: float, rate: float) -> dict[str, float]:
    return {"pushes": 100, "failures": 0, "cpu_us_per_push": cpu_us, "pushes_per_s": rate}


def push_results(*, official: bool) -> dict[str, Any]:
    fcm: dict[str, Any] = {
        "sender": contender(200, 1_900),
        "bare_aiohttp": contender(180, 2_000),
        "ratio_cpu_sender_over_bare": 1.111,
        "ratio_rate_sender_over_bare": 0.95,
    }
    apns: dict[str, Any] = {
        "sender": contender(400, 1_200),
        "bare_httpx_h2": contender(1_200, 550),
        "ratio_cpu_sender_over_bare": 0.333,
        "ratio_rate_sender_over_bare": 2.182,
    }
    if official:
        fcm |= {
            "official_client": contender(5_400, 170),
            "ratio_cpu_official_over_bare": 30.0,
            "ratio_rate_official_over_bare": 0.085,
        }
        apns |= {
            "official_client": contender(390, 1_150),
            "ratio_cpu_official_over_bare": 0.325,
            "ratio_rate_official_over_bare": 2.091,
        }
    return {"push": {"fcm": fcm, "apns": apns}}


def push_rows(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        row["figure"]: row for row in evaluate(results) if "FCM" in row["figure"] or "APNS" in row["figure"]
    }


def test_push_rows_judge_against_the_bare_client_and_show_the_official_client_alone() -> None:
    rows = push_rows(push_results(official=True))

    assert rows["FCM client CPU per push (us)"]["baseline"] == "aiohttp 180; firebase-admin alone 5,400"
    assert rows["FCM client CPU per push (us)"]["ratio"] == 1.111
    assert rows["FCM client CPU per push (us)"]["met"] is True
    assert rows["FCM pushes/s (20 ms fake)"]["baseline"] == "aiohttp 2,000; firebase-admin alone 170"
    assert rows["APNS client CPU per push (us)"]["baseline"] == "httpx h2 1,200; aioapns alone 390"
    assert rows["APNS pushes/s (20 ms fake)"]["met"] is True
    assert "firebase-admin alone 5,400" in render_table(push_results(official=True))


def test_results_without_the_official_client_keep_their_rows() -> None:
    rows = push_rows(push_results(official=False))

    assert rows["FCM client CPU per push (us)"]["baseline"] == "aiohttp 180"
    assert rows["APNS pushes/s (20 ms fake)"]["baseline"] == "httpx h2 550"
    assert len(rows) == 4


def test_the_plot_is_written_with_or_without_the_official_client(tmp_path: Path) -> None:
    for official in (True, False):
        path = tmp_path / f"plot-{official}.png"
        write_plot(push_results(official=official), path)
        assert path.read_bytes().startswith(b"\x89PNG")
