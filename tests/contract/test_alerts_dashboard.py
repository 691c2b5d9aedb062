"""The alerts and the dashboard query metrics the worker really exports, and every alert has a runbook.

Metric names and label names are taken from the worker's own registry
(service/observability/metrics.py), so renaming a metric or a label breaks this test rather than
silently emptying a panel or an alert.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from service.domain.push import OutcomeKind, Provider
from service.domain.rounds import Outcome
from service.observability.metrics import Metrics
from service.wire.commands import TestOutcome
from tests.contract.chart import ALL_FEATURES, CHART, REPO, only, render
from tests.contract.promql import inspect, without_grafana_variables

RUNBOOK = REPO / "docs" / "runbook.md"
TARGET_LABELS = {"namespace", "job", "pod", "instance", "service", "endpoint", "container"}
"""Labels Prometheus attaches when scraping through the ServiceMonitor."""
EXTERNAL_SERIES = {"up", "kafka_consumergroup_lag"}
"""Series not exported by the worker: the scrape's own `up`, and kafka-exporter's lag."""


def _exported() -> dict[str, set[str]]:
    """Series name -> its label names, for every metric the worker registers."""
    metrics = Metrics(topics=["livechat.chat-events"])
    series: dict[str, set[str]] = {}
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        name, labels, kind = metric._name, set(metric._labelnames), metric._type
        if kind == "counter":
            series[f"{name}_total"] = labels
        elif kind == "histogram":
            series |= {f"{name}_bucket": labels | {"le"}, f"{name}_sum": labels, f"{name}_count": labels}
        else:
            series[name] = labels
    return series


def _rules() -> list[dict[str, Any]]:
    rule = only(render((ALL_FEATURES,)), "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART / "dashboards" / "livechat-notifier.json").read_text())
    return loaded


def _panels() -> list[dict[str, Any]]:
    return [panel for panel in _dashboard()["panels"] if panel["type"] != "row"]


def _expressions() -> list[tuple[str, str]]:
    found = [(f"alert {rule['alert']}", rule["expr"]) for rule in _rules()]
    found += [
        (f"panel {panel['title']!r}", target["expr"]) for panel in _panels() for target in panel["targets"]
    ]
    return found


def _problems(expression: str, exported: dict[str, set[str]]) -> list[str]:
    (inspected,) = inspect([without_grafana_variables(expression)])
    if inspected.error is not None:
        return [f"not PromQL: {inspected.error}"]
    problems = []
    labels_in_play = set(TARGET_LABELS)
    worker_series = [s for s in inspected.selectors if s.name not in EXTERNAL_SERIES]
    if not inspected.selectors:
        problems.append("selects no series")
    for selector in worker_series:
        if selector.name not in exported:
            problems.append(f"{selector.name} is not a series the worker exports")
            continue
        labels_in_play |= exported[selector.name]
        problems += [
            f"{selector.name} has no label {label!r}"
            for label in selector.labels
            if label not in exported[selector.name] | TARGET_LABELS
        ]
    if worker_series:
        problems += [
            f"aggregates by {label!r}, which none of its metrics has"
            for grouping in inspected.group_by
            for label in grouping
            if label not in labels_in_play
        ]
    return problems


@pytest.mark.parametrize(("where", "expression"), _expressions(), ids=lambda v: v if " " in v else "")
def test_queries_use_exported_metrics_and_labels(where: str, expression: str) -> None:
    assert _problems(expression, _exported()) == [], f"{where}: {expression}"


def test_query_check_catches_a_renamed_metric_or_label() -> None:
    exported = _exported()
    assert _problems('sum(rate(notifier_push_total{job="x"}[5m]))', exported)
    assert _problems('sum by (site_id) (rate(notifier_rounds_closed_total{outcome="missed"}[5m]))', exported)
    assert _problems('rate(notifier_pushes_total{outcom="delivered"}[5m])', exported)
    assert _problems('sum(rate(notifier_pushes_total{job="x"},outcome="delivered"}[5m]))', exported)


def _label_values() -> dict[tuple[str, str], set[str]]:
    """(series, label) -> the values the worker gives that label."""
    return {
        ("notifier_pushes_total", "outcome"): {kind.value for kind in OutcomeKind},
        ("notifier_pushes_total", "provider"): {provider.value for provider in Provider},
        ("notifier_rounds_closed_total", "outcome"): {outcome.value for outcome in Outcome},
        ("notifier_transactions_total", "result"): {"committed", "aborted"},
        ("notifier_test_pushes_total", "outcome"): {outcome.value for outcome in TestOutcome},
    }


def test_queries_match_label_values_the_worker_uses() -> None:
    known = _label_values()
    checked = 0
    for where, expression in _expressions():
        for series, selector in re.findall(r"\b(notifier_\w+)\{([^}]*)\}", expression):
            for label, value in re.findall(r'(\w+)=~?"([^"$]*)"', selector):
                if (series, label) in known:
                    checked += 1
                    unknown = set(value.split("|")) - known[series, label]
                    assert not unknown, f"{where}: {series}{{{label}}} has no value {sorted(unknown)}"
    assert checked >= 5  # the pattern does find the selectors


def test_alerts_cover_what_sres_need() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in _rules()}
    needs = {
        "worker down": "up{",
        "not ready": "notifier_ready",
        "consumer lag": "kafka_consumergroup_lag",
        "deadline lateness p99": "histogram_quantile(0.99, sum by (le) (rate(notifier_deadline_lateness",
        "missed rate": 'outcome="missed"',
        "push error ratio by provider": "sum by (provider) (rate(notifier_pushes_total",
        "dead letters": "notifier_events_rejected_total",
        "token rejections": 'outcome="token_dead"',
        "rounds that reached no phone": "notifier_rounds_unreachable_total",
        "test pushes failing": 'outcome=~"failed|not_configured"',
    }
    for need, fragment in needs.items():
        assert any(fragment in expr for expr in exprs.values()), need


def test_every_alert_is_labelled_and_has_a_runbook_entry() -> None:
    headings = set(re.findall(r"^### (\w+)$", RUNBOOK.read_text(), flags=re.MULTILINE))
    alerts = [rule["alert"] for rule in _rules()]
    assert len(alerts) == len(set(alerts))
    assert set(alerts) == headings, "runbook entries and alerts differ"
    for rule in _rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["labels"]["team"] == "live-chat"  # prometheusRule.alertLabels
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]
        assert rule["annotations"]["runbook_url"].endswith(f"runbook.md#{rule['alert'].lower()}")
        assert re.fullmatch(r"\d+m", rule["for"])


def test_alerts_select_this_release() -> None:
    rules = _rules()
    for rule, inspected in zip(rules, inspect([rule["expr"] for rule in rules]), strict=True):
        worker = [s for s in inspected.selectors if s.name != "kafka_consumergroup_lag"]
        for selector in worker:
            assert {"namespace", "job"} <= set(selector.labels), f"{rule['alert']}: {selector.name}"
        if worker:
            assert 'namespace="chat",job="notifier-livechat-notifier"' in rule["expr"], rule["alert"]
        else:  # the lag alert: the worker's consumer group on its chat-events topic
            assert 'consumergroup="livechat-notifier-eu",topic="eu.livechat.chat-events"' in rule["expr"]


def test_dashboard_is_well_formed() -> None:
    dashboard = _dashboard()
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    for panel in _panels():
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
            assert used <= variables, f"{panel['title']}: undefined {used - variables}"
    # Everything the issue asks the dashboard to show.
    text = json.dumps(dashboard)
    for metric in (
        "notifier_events_consumed_total",
        "kafka_consumergroup_lag",
        "notifier_pending_rounds",
        "notifier_deadline_lateness_seconds_bucket",
        "notifier_rounds_closed_total",
        "notifier_pushes_total",
        "notifier_push_latency_seconds_bucket",
        "notifier_request_to_accept_seconds_bucket",
        "notifier_rounds_unreachable_total",
        "notifier_test_pushes_total",
    ):
        assert metric in text, metric
    assert any("$lag_metric" in target["expr"] for panel in _panels() for target in panel["targets"])
