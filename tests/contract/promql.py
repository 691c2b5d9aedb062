"""PromQL inspected by Prometheus' own parser, through deploy/tools/promql-check.

scripts/check-deploy builds that small Go program (it imports only the parser package of
github.com/prometheus/prometheus) into .cache/bin. Grafana's template variables are replaced by
plain values before parsing, as Grafana does before sending a query.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass

import pytest

from tests.contract.chart import REPO

PROMQL_CHECK = REPO / ".cache" / "bin" / "promql-check"
GRAFANA_VALUES = {"__rate_interval": "5m", "lag_metric": "kafka_consumergroup_lag"}


@dataclass(frozen=True, slots=True)
class Selector:
    name: str
    labels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Inspected:
    error: str | None
    selectors: tuple[Selector, ...]
    group_by: tuple[tuple[str, ...], ...]


def without_grafana_variables(expression: str) -> str:
    return re.sub(r"\$(\w+)", lambda match: GRAFANA_VALUES.get(match[1], match[1]), expression)


def inspect(expressions: list[str]) -> list[Inspected]:
    if not PROMQL_CHECK.is_file():
        pytest.fail(f"{PROMQL_CHECK.relative_to(REPO)} is missing: run scripts/check-deploy, which builds it")
    result = subprocess.run(
        [str(PROMQL_CHECK)],
        input=json.dumps(expressions),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [
        Inspected(
            error=item["error"],
            selectors=tuple(Selector(s["name"], tuple(s["labels"])) for s in item["selectors"]),
            group_by=tuple(tuple(labels) for labels in item["group_by"]),
        )
        for item in json.loads(result.stdout)
    ]
