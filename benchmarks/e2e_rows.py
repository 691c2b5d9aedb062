"""Table rows of issue #13's end-to-end and directory-scale sections (benchmarks/directory.py and
the sections after it), in the shape of `benchmarks.report` rows. Kept apart from report.py, which
several sections' authors edit."""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]


def _get(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _le(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _row(
    figure: str, measured: str, baseline: str, ratio: float | None, target: str, *, met: bool | None
) -> Row:
    return {
        "figure": figure,
        "measured": measured,
        "baseline": baseline,
        "ratio": ratio,
        "target": target,
        "met": met,
    }


def directory_rows(results: dict[str, Any]) -> list[Row]:
    """One worker holding the whole agents and sites directory."""
    d = _get(results, "directory")
    if not isinstance(d, dict) or "agents" not in d:
        return []
    size = f"{d['agents']:,} agents x 2 devices, {d['accounts']:,} accounts, {d['sites']:,} sites"
    mb = _num(d.get("directory_rss_mb"))
    ready = _num(d.get("start_to_ready_s"))
    large = _get(d, "lookup", "large", "by_account_size") or {}
    us = _num(_get(large, "50", "us_per_lookup"))
    us_small = _num(_get(d, "lookup", "small", "by_account_size", "50", "us_per_lookup"))
    small_agents = _get(d, "lookup", "small", "directory_agents") or 0
    by_size = ", ".join(f"{n} agents {v['us_per_lookup']:,.1f}" for n, v in large.items())
    return [
        _row(
            f"directory RSS ({size})",
            f"{mb:,.0f} MB ({d['directory_rss_bytes_per_agent']:,.0f} B/agent)" if mb is not None else "-",
            f"empty-directory worker {d['rss_empty_bytes'] / 1e6:,.0f} MB (subtracted)",
            None,
            "<= 600 MB",
            met=_le(mb, 600),
        ),
        _row(
            "directory bootstrap: start to ready (s)",
            f"{ready:.1f} s" if ready is not None else "-",
            f"empty directory {d['empty_start_to_ready_s']:.1f} s; "
            f"topics filled in {d['fill_agents_s']:.0f} s",
            None,
            "<= 30 s",
            met=_le(ready, 30),
        ),
        _row(
            "eligibility lookup, account of 50 agents (us)",
            f"{us:.1f} (by account size: {by_size})" if us is not None else "-",
            f"same account in a {small_agents:,}-agent directory {us_small:.1f}"
            if us_small is not None
            else "-",
            round(us / us_small, 2) if us and us_small else None,
            "<= 50 us, following the account's size, not the directory's",
            met=_le(us, 50),
        ),
    ]


def worker_cpu_rows(results: dict[str, Any]) -> list[Row]:
    """Whole worker CPU per delivered push next to the senders alone (push section, same run),
    weighted by the load's FCM:APNs mix: the latency section's load (every handoff to 3 FCM + 2
    APNs devices of one agent) and the fan-out heavy one (many agents, an FCM and an APNs device
    each)."""
    fcm = _num(_get(results, "push", "fcm", "sender", "cpu_us_per_push"))
    apns = _num(_get(results, "push", "apns", "sender", "cpu_us_per_push"))
    rows = []
    fanout = _get(results, "fanout_cpu") or {}
    for figure, per_push, fcm_share in (
        (
            "worker CPU per delivered push (us; 200 handoffs/s x 3 FCM + 2 APNs)",
            _num(_get(results, "latency", "worker_cpu_us_per_push")),
            0.6,
        ),
        (
            (
                "worker CPU per delivered push (us; fan-out heavy: "
                f"{fanout.get('handoffs_per_s')} handoffs/s x {fanout.get('agents')} agents x FCM + APNs)"
            ),
            _num(fanout.get("worker_cpu_us_per_push")),
            0.5,
        ),
    ):
        if per_push is None:
            continue
        senders = fcm_share * fcm + (1 - fcm_share) * apns if fcm is not None and apns is not None else None
        ratio = round(per_push / senders, 2) if senders else None
        rows.append(
            _row(
                figure,
                f"{per_push:,.0f}",
                f"senders alone {senders:,.0f} (FCM {fcm:,.0f}, APNs {apns:,.0f}; {fcm_share:.0%} FCM)"
                if senders
                else "-",
                ratio,
                "<= 1.5x the senders alone",
                met=_le(ratio, 1.5),
            )
        )
    return rows


def missed_rows(results: dict[str, Any]) -> list[Row]:
    """Missed lateness at a read_committed consumer and inside the worker, right after a backlog
    (200 requests/s) and at half the max rate (benchmarks/missed_e2e.py)."""
    m = _get(results, "missed_e2e")
    if not isinstance(m, dict) or "after_backlog" not in m:
        return []
    rows = []
    for key, label in (
        ("after_backlog", f"after a {m['backlog_rounds']:,}-round backlog"),
        ("half_rate", ""),
    ):
        phase = m[key]
        consumer = _num(_get(phase, "at_consumer", "p99_ms"))
        worker = _num(_get(phase, "in_worker", "p99_ms"))
        share = _get(phase, "worker_histogram", "share_within_50ms")
        rate = f"{phase['requests_per_s']:,.0f} requests/s ({phase['events_per_s_produced']:,.0f} events/s)"
        rows.append(
            _row(
                f"Missed lateness p99, {rate}{', ' + label if label else ''}",
                f"consumer {consumer:.0f} ms, worker {worker:.0f} ms "
                f"({phase['missed_received']}/{phase['missed_expected']})"
                if consumer is not None and worker is not None
                else "-",
                f"worker histogram: {share:.1%} within 50 ms" if isinstance(share, float) else "-",
                None,
                "consumer <= 100 ms, worker <= 50 ms",
                met=None if consumer is None or worker is None else consumer <= 100 and worker <= 50,
            )
        )
    return rows
