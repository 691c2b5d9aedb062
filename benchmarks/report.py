"""The suite's results as rows (figure, measured, baseline, ratio, target, met), a Markdown table
and a PNG plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib as mpl

from benchmarks.e2e_rows import directory_rows, missed_rows, worker_cpu_rows

mpl.use("Agg")
import matplotlib.pyplot as plt

Row = dict[str, Any]


def _get(results: dict[str, Any], *path: str) -> Any:
    value: Any = results
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


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


def _all(*conditions: bool | None) -> bool | None:
    if any(c is None for c in conditions):
        return None
    return all(conditions)


def _le(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _ge(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


def evaluate(results: dict[str, Any]) -> list[Row]:
    """One row per figure of issue #6, with the verdict against its target (None: not measured)."""
    rows: list[Row] = []
    worker = _num(_get(results, "throughput", "worker", "events_per_s"))
    bare = _num(_get(results, "throughput", "bare_loop", "events_per_s"))
    tp_ratio = _num(_get(results, "throughput", "ratio_worker_over_bare"))
    rows.append(
        _row(
            "event throughput (events/s)",
            f"{worker:,.0f}" if worker else "-",
            f"{bare:,.0f}" if bare else "-",
            tp_ratio,
            ">= 20,000/s and >= 0.5x bare loop",
            met=_all(_ge(worker, 20_000), _ge(tp_ratio, 0.5)),
        )
    )
    p99 = _num(_get(results, "deadlines", "lateness", "p99_ms"))
    worst = _num(_get(results, "deadlines", "lateness", "max_ms"))
    pending = _get(results, "deadlines", "pending_rounds")
    rate = _get(results, "deadlines", "rate_events_per_s_produced")
    rows.append(
        _row(
            f"deadline lateness ({pending:,} pending, {rate:,.0f} events/s)"
            if pending and rate
            else "deadline lateness",
            f"p99 {p99:.0f} ms, max {worst:.0f} ms" if p99 is not None and worst is not None else "-",
            "-",
            None,
            "p99 <= 50 ms, max <= 250 ms",
            met=_all(_le(p99, 50), _le(worst, 250)),
        )
    )
    held = _num(_get(results, "capacity", "pending_rounds_held"))
    per_round = _num(_get(results, "capacity", "bytes_per_round"))
    heap = _num(_get(results, "capacity", "heap_alone_bytes_per_round"))
    beyond = _num(_get(results, "capacity", "bytes_per_round_beyond_heap"))
    rows.append(
        _row(
            "capacity (pending rounds; RSS per round)",
            f"{held:,.0f} held; {per_round:.0f} B/round"
            if held is not None and per_round is not None
            else "-",
            f"heap alone {heap:.0f} B/round" if heap is not None else "-",
            round(per_round / heap, 2) if per_round and heap else None,
            "1M rounds, <= 400 B/round beyond the heap",
            met=_all(_ge(held, 1_000_000), _le(beyond, 400)),
        )
    )
    rounds = _num(_get(results, "restore", "rounds"))
    restore_s = _num(_get(results, "restore", "worker_restore_s"))
    read_s = _num(_get(results, "restore", "baseline_bare_consumer_s"))
    rs_ratio = _num(_get(results, "restore", "ratio_baseline_over_restore"))
    rows.append(
        _row(
            f"restore ({rounds:,.0f} rounds, s)" if rounds else "restore (s)",
            f"{restore_s:.2f} s" if restore_s is not None else "-",
            f"bare read {read_s:.2f} s" if read_s is not None else "-",
            rs_ratio,
            "1M rounds < 20 s and >= 0.5x (bare/restore)",
            met=_all(_ge(rounds, 1_000_000), _le(restore_s, 20), _ge(rs_ratio, 0.5)),
        )
    )
    for provider, bare_key, label, official_label in (
        ("fcm", "bare_aiohttp", "aiohttp", "firebase-admin"),
        ("apns", "bare_httpx_h2", "httpx h2", "aioapns"),
    ):
        for title, metric, ratio_key, target, compare, limit in (
            (
                "client CPU per push (us)",
                "cpu_us_per_push",
                "ratio_cpu_sender_over_bare",
                "<= 1.2x bare",
                _le,
                1.2,
            ),
            (
                "pushes/s (20 ms fake)",
                "pushes_per_s",
                "ratio_rate_sender_over_bare",
                ">= 0.8x bare",
                _ge,
                0.8,
            ),
        ):
            ours = _num(_get(results, "push", provider, "sender", metric))
            bare = _num(_get(results, "push", provider, bare_key, metric))
            official = _num(_get(results, "push", provider, "official_client", metric))
            ratio = _num(_get(results, "push", provider, ratio_key))
            rows.append(
                _row(
                    f"{provider.upper()} {title}",
                    f"{ours:,.0f}" if ours is not None else "-",
                    _push_baselines(label, bare, official_label, official),
                    ratio,
                    target,
                    met=compare(ratio, limit),
                )
            )
    p50 = _num(_get(results, "latency", "p50_ms"))
    lp99 = _num(_get(results, "latency", "p99_ms"))
    received = _get(results, "latency", "pushes_received")
    expected = _get(results, "latency", "pushes_expected")
    rows.append(
        _row(
            "handoff-to-push latency (200/s x 5 devices)",
            f"p50 {p50:.1f} ms, p99 {lp99:.1f} ms ({received}/{expected} pushes)"
            if p50 is not None and lp99 is not None
            else "-",
            "-",
            None,
            "p50 <= 15 ms, p99 <= 60 ms",
            met=_all(_le(p50, 15), _le(lp99, 60), None if received is None else received == expected),
        )
    )
    two = _num(_get(results, "throughput", "two_workers", "events_per_s"))
    rows.append(
        _row(
            "scale-out: 2 workers (events/s)",
            f"{two:,.0f}" if two else "-",
            f"1 worker {worker:,.0f}" if worker else "-",
            _num(_get(results, "throughput", "ratio_two_over_one")),
            "reported (near 2x if the broker is not the limit)",
            met=None,
        )
    )
    rows.extend(_timer_rows(results))
    rows.extend(_fcm_tls_rows(results))
    rows.extend(directory_rows(results))
    rows.extend(worker_cpu_rows(results))
    rows.extend(missed_rows(results))
    rows.extend(_kafka_streams_rows(results))
    return rows


def _kafka_streams_rows(results: dict[str, Any]) -> list[Row]:
    """Issue #13: the worker next to the Kafka Streams peer (benchmarks/peer_kafka_streams.py), same
    broker, same input. Targets: throughput >= 0.5x the peer's; Missed p99 (as a read_committed
    consumer sees it) at or below the peer's. Restore has no target: reported side by side."""
    ks: dict[str, Any] | None = _get(results, "kafka_streams")
    if not isinstance(ks, dict) or "error" in ks:
        return []
    w_tp = _num(_get(ks, "throughput", "worker", "events_per_s"))
    k_tp = _num(_get(ks, "throughput", "kafka_streams", "events_per_s"))
    k_tp_100 = _num(_get(ks, "throughput", "kafka_streams_commit_100ms", "events_per_s"))
    tp_ratio = _num(ks.get("ratio_throughput_worker_over_kstreams"))

    def late(side: str) -> str:
        seen = _get(ks, "lateness", side, "lateness_visible") or {}
        append = _get(ks, "lateness", side, "lateness_append") or {}
        got, want = (
            _get(ks, "lateness", side, "missed_received"),
            _get(ks, "lateness", side, "missed_expected"),
        )
        if "p99_ms" not in seen:
            return "-"
        return (
            f"seen p50 {seen['p50_ms']:.0f} / p99 {seen['p99_ms']:.0f} ms, appended p99 "
            f"{append.get('p99_ms', 0):.0f} ms ({got}/{want})"
        )

    def complete(side: str) -> bool | None:
        lat = _get(ks, "lateness", side)
        if not isinstance(lat, dict):
            return None
        return lat["missed_received"] == lat["missed_expected"] == lat["chatbot_received"] and not (
            lat["missed_duplicates"] or lat["chatbot_duplicates"]
        )

    rate = _get(ks, "lateness", "worker", "rate_events_per_s_target")
    p99_ratio = _num(ks.get("ratio_p99_visible_worker_over_kstreams"))
    w_rs = _num(_get(ks, "restore", "worker", "spawn_to_processing_s"))
    k_rs = _num(_get(ks, "restore", "kafka_streams", "spawn_to_processing_s"))
    rounds = _num(_get(ks, "restore", "worker", "rounds"))
    return [
        _row(
            "vs Kafka Streams: throughput (events/s)",
            f"{w_tp:,.0f}" if w_tp else "-",
            f"Kafka Streams {k_tp:,.0f} (commit 10 ms), {k_tp_100:,.0f} (100 ms)"
            if k_tp and k_tp_100
            else "-",
            tp_ratio,
            ">= 0.5x Kafka Streams (the faster)",
            met=_ge(tp_ratio, 0.5),
        ),
        _row(
            f"vs Kafka Streams: Missed lateness at half load ({rate:,} events/s)"
            if isinstance(rate, int)
            else "vs Kafka Streams: Missed lateness at half load",
            late("worker"),
            f"Kafka Streams {late('kafka_streams')}",
            p99_ratio,
            "p99 seen <= Kafka Streams'; one Missed + one chatbot each",
            met=_all(_le(p99_ratio, 1.0), complete("worker"), complete("kafka_streams")),
        ),
        _row(
            f"vs Kafka Streams: restore {rounds:,.0f} pending rounds (spawn to processing, s)"
            if rounds
            else "vs Kafka Streams: restore (spawn to processing, s)",
            f"{w_rs:.2f} s" if w_rs is not None else "-",
            f"Kafka Streams {k_rs:.2f} s" if k_rs is not None else "-",
            round(w_rs / k_rs, 3) if w_rs and k_rs else None,
            "reported (lower is better)",
            met=None,
        ),
    ]


def _timer_rows(results: dict[str, Any]) -> list[Row]:
    """Issue #13: one APScheduler job per chat (the obvious Python design) vs the worker's timers,
    each in a process of its own (benchmarks/timer_peers.py). No target: reported side by side."""
    ours, aps = _get(results, "timers", "worker"), _get(results, "timers", "apscheduler")
    if not isinstance(ours, dict) or not isinstance(aps, dict):
        return []
    pending = f"{ours['pending']:,}"
    size: dict[str, Any] = _get(results, "timers", "size") or {}

    def lateness(side: dict[str, Any]) -> str:
        p99, worst = _num(side.get("lateness_p99_ms")), _num(side.get("lateness_max_ms"))
        figures = f"p99 {p99:.1f} ms, max {worst:.1f} ms" if p99 is not None and worst is not None else "-"
        return f"{figures} ({side['fired']}/{side['fired_expected']} fired)"

    def burst(side: dict[str, Any]) -> str:
        p99, worst = _num(side.get("burst_lateness_p99_ms")), _num(side.get("burst_lateness_max_ms"))
        figures = f"p99 {p99:,.0f} ms, max {worst:,.0f} ms" if p99 is not None and worst is not None else "-"
        return f"{figures} ({side['burst_fired']:,} fired)"

    def memory(side: dict[str, Any]) -> str:
        return f"{side['rss_bytes_per_round']:,.0f} B RSS, {side['traced_bytes_per_round']:,.0f} B traced"

    return [
        _row(
            f"per-chat timers: adds/s at {pending} pending",
            f"worker {ours['adds_per_s']:,.0f}",
            f"APScheduler {aps['adds_per_s']:,.0f}",
            _num(_get(results, "timers", "ratio_adds_worker_over_apscheduler")),
            "reported (worker / APScheduler)",
            met=None,
        ),
        _row(
            "per-chat timers: memory per pending round",
            f"worker {memory(ours)}",
            f"APScheduler {memory(aps)}",
            _num(_get(results, "timers", "ratio_rss_apscheduler_over_worker")),
            "reported (APScheduler / worker, RSS)",
            met=None,
        ),
        _row(
            f"per-chat timers: firing lateness at {pending} pending, {size.get('probe_rate', 0)}/s",
            f"worker {lateness(ours)}",
            f"APScheduler {lateness(aps)}",
            None,
            "reported; every due round fires",
            met=ours["fired"] == ours["fired_expected"],
        ),
        _row(
            f"per-chat timers: a burst of {size.get('burst', 0):,} due at once, {pending} pending",
            f"worker {burst(ours)}",
            f"APScheduler {burst(aps)}",
            None,
            "reported; every due round fires",
            met=ours["burst_fired"] == size.get("burst"),
        ),
    ]


def _fcm_tls_rows(results: dict[str, Any]) -> list[Row]:
    """Issue #13: FCM as in production (TLS, HTTP/2 offered), each client in a process of its own
    (benchmarks/push_tls.py); the sender judged against the bare aiohttp client as over plain HTTP."""
    tls = _get(results, "push", "fcm_tls")
    if not isinstance(tls, dict) or "sender" not in tls:
        return []
    ours, bare, official = tls["sender"], tls["bare_aiohttp"], tls["official_client"]
    h2 = tls["bare_httpx_h2"]

    def connections(side: dict[str, Any]) -> str:
        by_protocol = ", ".join(f"{n} {p}" for p, n in sorted(side["connections_by_protocol"].items()))
        return f"{side['tls_handshakes']} ({by_protocol}; {side.get('token_connections', '?')} for the token)"

    return [
        _row(
            "FCM over TLS, h2 offered: client CPU per push (us)",
            f"{ours['cpu_us_per_push']:,.0f}",
            f"aiohttp {bare['cpu_us_per_push']:,.0f}; "
            f"firebase-admin alone {official['cpu_us_per_push']:,.0f}; httpx h2 {h2['cpu_us_per_push']:,.0f}",
            _num(tls.get("ratio_cpu_sender_over_bare")),
            "<= 1.2x bare",
            met=_le(_num(tls.get("ratio_cpu_sender_over_bare")), 1.2),
        ),
        _row(
            "FCM over TLS, h2 offered: pushes/s (20 ms fake)",
            f"{ours['pushes_per_s']:,.0f}",
            f"aiohttp {bare['pushes_per_s']:,.0f}; firebase-admin alone {official['pushes_per_s']:,.0f}; "
            f"httpx h2 {h2['pushes_per_s']:,.0f}",
            _num(tls.get("ratio_rate_sender_over_bare")),
            ">= 0.8x bare",
            met=_ge(_num(tls.get("ratio_rate_sender_over_bare")), 0.8),
        ),
        _row(
            "FCM over TLS: TLS handshakes = connections (by protocol)",
            connections(ours),
            f"firebase-admin alone {connections(official)}; aiohttp {connections(bare)}",
            None,
            "reported",
            met=None,
        ),
    ]


def _push_baselines(label: str, bare: float | None, official_label: str, official: float | None) -> str:
    """The push rows' baselines: the bare client (what the ratio and target use), then the official
    client alone (for reference: what using the SDK as it comes would cost)."""
    parts = [f"{label} {bare:,.0f}" if bare is not None else "-"]
    if official is not None:
        parts.append(f"{official_label} alone {official:,.0f}")
    return "; ".join(parts)


def render_table(results: dict[str, Any]) -> str:
    rows: list[Row] = results.get("summary") or evaluate(results)
    lines = [
        "| figure | measured | baseline (same run) | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = {True: "yes", False: "**no**", None: "-"}
    for row in rows:
        ratio = f"{row['ratio']:.2f}" if isinstance(row["ratio"], int | float) else "-"
        lines.append(
            f"| {row['figure']} | {row['measured']} | {row['baseline']} | {ratio} | {row['target']} "
            f"| {verdicts[row['met']]} |"
        )
    return "\n".join(lines)


def _push_ratio(results: dict[str, Any], provider: str, figure: str, target: float) -> tuple[str, Any, float]:
    """A push bar: sender/bare with its target; the official client's own ratio to bare in the label
    (as text: firebase-admin's is tens of times bare and would flatten every other bar)."""
    name = f"{provider} {'CPU' if figure == 'cpu' else figure}\nsender/bare"
    official = _num(_get(results, "push", provider.lower(), f"ratio_{figure}_official_over_bare"))
    if official is not None:
        name += f"\n(official {official:.2f})"
    return name, _get(results, "push", provider.lower(), f"ratio_{figure}_sender_over_bare"), target


def write_plot(results: dict[str, Any], path: Path) -> None:
    """Left: each ratio to its same-run baseline, with the target. Right: latencies vs targets."""
    ratios = [
        ("throughput\nworker/bare", _get(results, "throughput", "ratio_worker_over_bare"), 0.5),
        ("scale-out\n2/1 workers", _get(results, "throughput", "ratio_two_over_one"), 2.0),
        ("restore\nbare/worker", _get(results, "restore", "ratio_baseline_over_restore"), 0.5),
        _push_ratio(results, "FCM", "cpu", 1.2),
        _push_ratio(results, "FCM", "rate", 0.8),
        _push_ratio(results, "APNs", "cpu", 1.2),
        _push_ratio(results, "APNs", "rate", 0.8),
        (
            "throughput\nworker/KS",
            _get(results, "kafka_streams", "ratio_throughput_worker_over_kstreams"),
            0.5,
        ),
        (
            "Missed p99\nworker/KS",
            _get(results, "kafka_streams", "ratio_p99_visible_worker_over_kstreams"),
            1.0,
        ),
    ]
    latencies = [
        ("deadline\np99", _get(results, "deadlines", "lateness", "p99_ms"), 50.0),
        ("deadline\nmax", _get(results, "deadlines", "lateness", "max_ms"), 250.0),
        ("handoff→push\np50", _get(results, "latency", "p50_ms"), 15.0),
        ("handoff→push\np99", _get(results, "latency", "p99_ms"), 60.0),
    ]
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [7, 4]})
    for axis, items, unit in ((left, ratios, "ratio"), (right, latencies, "ms")):
        names = [name for name, _, _ in items]
        values = [float(v) if isinstance(v, int | float) else 0.0 for _, v, _ in items]
        positions = list(range(len(items)))
        axis.bar(positions, values, color="#4c72b0", label="measured")
        axis.scatter(positions, [t for _, _, t in items], color="#c44e52", marker="_", s=600, label="target")
        axis.set_xticks(positions, names, fontsize=8)
        axis.set_ylabel(unit)
        axis.legend()
        for x, value in zip(positions, values, strict=True):
            axis.annotate(
                f"{value:.2f}" if unit == "ratio" else f"{value:.0f}", (x, value), ha="center", va="bottom"
            )
    left.set_title("ratio to the same-run baseline (CPU: lower is better)")
    right.set_title("latency (lower is better)")
    machine = results.get("machine", {})
    figure.suptitle(
        f"livechat-notifier benchmarks, {results.get('date', '')}, "
        f"scale {results.get('scale', {}).get('name', '')}, "
        f"{machine.get('cores')} cores {machine.get('cpu', '')}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
