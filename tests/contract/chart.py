"""Render the Helm chart with the helm that scripts/check-deploy builds, and validate manifests offline.

Built-in kinds are validated with kubernetes-validate's strict schemas (unknown fields are errors).
The custom resources the chart can create (ServiceMonitor, PrometheusRule, ScaledObject,
TriggerAuthentication) are validated against the CRDs' own openAPIV3Schema, vendored in
deploy/schemas/crds/ with their source, made strict the same way. A kind with neither schema fails.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "livechat-notifier"
HELM = REPO / ".cache" / "bin" / "helm"
CRD_SCHEMAS = REPO / "deploy" / "schemas" / "crds"
ALL_FEATURES = CHART / "ci" / "all-features-values.yaml"
HPA_OVERRIDES = CHART / "ci" / "hpa-overrides.yaml"
KUBE_VERSIONS = ("1.27.0", "1.37.0")
"""Chart.yaml's kubeVersion floor and the newest Kubernetes kubernetes-validate carries."""
NAMESPACE = "chat"
RELEASE = "notifier"

Manifest = dict[str, Any]


def helm() -> Path:
    if not HELM.is_file():
        pytest.fail(f"{HELM.relative_to(REPO)} is missing: run scripts/check-deploy, which builds it")
    return HELM


def _helm_template(
    value_files: Sequence[Path], sets: Sequence[str], kube_version: str
) -> subprocess.CompletedProcess[str]:
    command = [str(helm()), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    command += ["--kube-version", kube_version]
    for path in value_files:
        command += ["--values", str(path)]
    for assignment in sets:
        command += ["--set", assignment]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)


@cache
def render(
    value_files: tuple[Path, ...] = (), sets: tuple[str, ...] = (), kube_version: str = KUBE_VERSIONS[-1]
) -> tuple[Manifest, ...]:
    """The manifests `helm template` renders, in order; fails the test if helm refuses."""
    result = _helm_template(value_files, sets, kube_version)
    if result.returncode != 0:
        pytest.fail(f"helm template failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render_error(value_files: Sequence[Path] = (), sets: Sequence[str] = ()) -> str:
    """Helm's error message for values the chart must refuse; fails the test if helm renders them."""
    result = _helm_template(value_files, sets, KUBE_VERSIONS[-1])
    if result.returncode == 0:
        pytest.fail(f"helm template accepted values it should refuse: {list(value_files)} {list(sets)}")
    return result.stderr


def only(manifests: Sequence[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _strict(schema: Any) -> Any:
    """Reject unknown fields as the API server's strict field validation does."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in strict
        and "additionalProperties" not in strict
        and not strict.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


@cache
def crd_validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    """(apiVersion, kind) -> validator, from the vendored CRD schemas."""
    validators = {}
    for path in sorted(CRD_SCHEMAS.glob("*.json")):
        schema = json.loads(path.read_text())
        gvk = schema["x-kubernetes-group-version-kind"]
        validators[(f"{gvk['group']}/{gvk['version']}", gvk["kind"])] = jsonschema.Draft7Validator(
            _strict(schema)
        )
    return validators


def validation_errors(manifest: Manifest, kube_version: str) -> Iterator[str]:
    """Every schema error of one manifest (none means valid)."""
    where = f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}"
    validator = crd_validators().get((manifest.get("apiVersion", ""), manifest.get("kind", "")))
    if validator is not None:
        for error in validator.iter_errors(manifest):
            yield f"{where}: {'.'.join(map(str, error.absolute_path))}: {error.message}"
        return
    try:
        kubernetes_validate.validate(manifest, kube_version, strict=True)
    except kubernetes_validate.ValidationError as error:
        yield f"{where}: {'.'.join(map(str, error.path))}: {error.message}"
    except kubernetes_validate.SchemaNotFoundError as error:
        yield f"{where}: no schema: {error.message}"
