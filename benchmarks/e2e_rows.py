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
