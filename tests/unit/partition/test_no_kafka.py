"""The per-partition processing is not a Kafka adapter: nothing in service/partition/ imports a
Kafka client or the Kafka adapters, so the step stays testable with plain values."""

from __future__ import annotations

import ast
from pathlib import Path

PARTITION = Path(__file__).resolve().parents[3] / "service" / "partition"


def test_service_partition_imports_neither_aiokafka_nor_service_kafka() -> None:
    imported: set[str] = set()
    for path in PARTITION.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    assert imported, "no module read: wrong path?"
    assert sorted(m for m in imported if m.split(".")[0] == "aiokafka" or m.startswith("service.kafka")) == []
