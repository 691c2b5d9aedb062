"""The Helm chart renders valid Kubernetes manifests that fit together, and refuses bad values.

Rendered with default values and with every optional feature on (KEDA and HPA variants), for the
oldest and newest Kubernetes the chart supports; every manifest is validated offline (chart.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.contract.chart import (
    ALL_FEATURES,
    CHART,
    HPA_OVERRIDES,
    KUBE_VERSIONS,
    Manifest,
    only,
    render,
    render_error,
    validation_errors,
)

BASE_KINDS = {"ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"}
SCENARIOS: dict[str, tuple[tuple[Path, ...], tuple[str, ...], set[str]]] = {
    "defaults": ((), (), BASE_KINDS),
    "service-monitor-brings-rules": (
        (),
        ("serviceMonitor.enabled=true",),
        BASE_KINDS | {"ServiceMonitor", "PrometheusRule"},
    ),
    "service-monitor-without-rules": (
        (),
        ("serviceMonitor.enabled=true", "prometheusRule.enabled=false"),
        BASE_KINDS | {"ServiceMonitor"},
    ),
    "all-features-keda": (
        (ALL_FEATURES,),
        (),
        BASE_KINDS
        | {"NetworkPolicy", "ServiceMonitor", "PrometheusRule", "ScaledObject", "TriggerAuthentication"},
    ),
    "all-features-hpa": (
        (ALL_FEATURES, HPA_OVERRIDES),
        (),
        BASE_KINDS | {"NetworkPolicy", "ServiceMonitor", "PrometheusRule", "HorizontalPodAutoscaler"},
    ),
}


def _scenario(name: str, kube_version: str = KUBE_VERSIONS[-1]) -> tuple[Manifest, ...]:
    files, sets, _ = SCENARIOS[name]
    return render(files, sets, kube_version)


def _settings(manifests: tuple[Manifest, ...]) -> dict[str, Any]:
    config_map = only(manifests, "ConfigMap", only(manifests, "Deployment")["metadata"]["name"])
    settings: dict[str, Any] = yaml.safe_load(config_map["data"]["notifier.yaml"])
    return settings


def _pod(manifests: tuple[Manifest, ...]) -> dict[str, Any]:
    pod: dict[str, Any] = only(manifests, "Deployment")["spec"]["template"]
    return pod


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_rendered_manifest_is_valid(scenario: str, kube_version: str) -> None:
    manifests = _scenario(scenario, kube_version)
    errors = [error for manifest in manifests for error in validation_errors(manifest, kube_version)]
    assert errors == []
    assert {m["kind"] for m in manifests} == SCENARIOS[scenario][2]


def test_validation_catches_a_misspelt_field() -> None:
    """The validation above is strict: an unknown field in a built-in or custom resource fails."""
    manifests = _scenario("all-features-keda")
    deployment = json.loads(json.dumps(only(manifests, "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    scaled = json.loads(json.dumps(only(manifests, "ScaledObject")))
    scaled["spec"]["maxReplicas"] = 3
    assert any("readinessProbes" in e for e in validation_errors(deployment, KUBE_VERSIONS[-1]))
    assert any("maxReplicas" in e for e in validation_errors(scaled, KUBE_VERSIONS[-1]))


@pytest.mark.parametrize("scenario", ["defaults", "all-features-keda", "all-features-hpa"])
def test_pods_run_locked_down_with_probes_and_grace(scenario: str) -> None:
    manifests = _scenario(scenario)
    settings = _settings(manifests)
    pod = _pod(manifests)["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    # The worker's own SIGTERM grace must end before Kubernetes kills it.
    assert pod["terminationGracePeriodSeconds"] > math.ceil(settings["shutdown_grace_seconds"])
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http-metrics": settings["http_port"]}
    probes = {
        name: container[name]["httpGet"] for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert {name: probe["path"] for name, probe in probes.items()} == {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    assert all(probe["port"] in ports for probe in probes.values())
    assert container["args"][-1] == "run"
    config_mount = container["args"][container["args"].index("--config") + 1]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert config_mount == f"{mounts['config']}/notifier.yaml"
    assert mounts["tmp"] == "/tmp"
    assert settings["shutdown_grace_seconds"] > 0


def test_grace_period_follows_the_shutdown_grace(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("shutdownGraceSeconds: 61.2\nterminationGraceMarginSeconds: 5\n")
    manifests = render((values,))
    assert _pod(manifests)["spec"]["terminationGracePeriodSeconds"] == 67
    assert _settings(manifests)["shutdown_grace_seconds"] == 61.2


@pytest.mark.parametrize("scenario", ["defaults", "all-features-keda", "all-features-hpa"])
def test_resources_select_the_worker_pods(scenario: str) -> None:
    manifests = _scenario(scenario)
    deployment = only(manifests, "Deployment")
    pod_labels = _pod(manifests)["metadata"]["labels"]
    name = deployment["metadata"]["name"]
    assert _matches(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    service = only(manifests, "Service")
    assert _matches(service["spec"]["selector"], pod_labels)
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http-metrics"]
    assert _matches(only(manifests, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], pod_labels)
    for constraint in _pod(manifests)["spec"]["topologySpreadConstraints"]:
        assert _matches(constraint["labelSelector"]["matchLabels"], pod_labels)
    assert (
        _pod(manifests)["spec"]["serviceAccountName"] == only(manifests, "ServiceAccount")["metadata"]["name"]
    )
    for manifest in manifests:
        kind = manifest["kind"]
        if kind == "ServiceMonitor":
            assert _matches(manifest["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
            assert [e["port"] for e in manifest["spec"]["endpoints"]] == [
                p["name"] for p in service["spec"]["ports"]
            ]
        if kind == "NetworkPolicy":
            assert _matches(manifest["spec"]["podSelector"]["matchLabels"], pod_labels)
        if kind in {"HorizontalPodAutoscaler", "ScaledObject"}:
            assert manifest["spec"]["scaleTargetRef"]["name"] == name
            assert "replicas" not in deployment["spec"]  # the autoscaler owns the count


def test_keda_scales_on_the_workers_group_and_topic_with_its_credentials() -> None:
    manifests = _scenario("all-features-keda")
    settings = _settings(manifests)
    (trigger,) = only(manifests, "ScaledObject")["spec"]["triggers"]
    meta = trigger["metadata"]
    assert meta["consumerGroup"] == settings["group_id"]
    assert meta["topic"] == settings["topic_chat_events"]
    assert meta["bootstrapServers"] == settings["kafka_bootstrap_servers"]
    assert (meta["sasl"], meta["tls"]) == ("scram_sha512", "enable")
    auth = only(manifests, "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    parameters = {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]}
    assert parameters == {"username", "password", "ca", "cert", "key"}
    # The same Secrets the worker mounts.
    mounted = {
        source["secret"]["name"]
        for volume in _pod(manifests)["spec"]["volumes"]
        if "projected" in volume
        for source in volume["projected"]["sources"]
    }
    assert {ref["name"] for ref in auth["spec"]["secretTargetRef"]} <= mounted


def test_dashboard_config_map_carries_the_dashboard_for_the_sidecar() -> None:
    manifests = _scenario("all-features-keda")
    config_map = only(manifests, "ConfigMap", "notifier-livechat-notifier-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "monitoring"
    shipped = json.loads(config_map["data"]["livechat-notifier.json"])
    assert shipped == json.loads((CHART / "dashboards" / "livechat-notifier.json").read_text())


def test_prometheus_rule_follows_the_service_monitor_unless_told() -> None:
    kinds = {m["kind"] for m in render((), ("prometheusRule.enabled=true",))}
    assert "PrometheusRule" in kinds
    assert "ServiceMonitor" not in kinds


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("replicaCount=two",), "at '/replicaCount': got string, want integer"),
        (("replicas=3",), "additional properties 'replicas' not allowed"),
        (("config.http_port=8081",), "additional properties 'http_port' not allowed"),
        (("config.log_level=LOUD",), "at '/config/log_level'"),
        (("config.default_time_to_accept_seconds=soon",), "at '/config/default_time_to_accept_seconds'"),
        (("kafka.securityProtocol=TLS",), "at '/kafka/securityProtocol'"),
        (("kafka.bootstrapServers=kafka",), "at '/kafka/bootstrapServers'"),
        (("shutdownGraceSeconds=0",), "at '/shutdownGraceSeconds'"),
        (("serviceMonitor.enabled=yes",), "at '/serviceMonitor/enabled': got string, want boolean"),
        (("prometheusRule.thresholds.missedRatio=2",), "at '/prometheusRule/thresholds/missedRatio'"),
        (("image.digest=latest",), "at '/image/digest'"),
        (
            ("autoscaling.enabled=true", "keda.enabled=true"),
            "autoscaling.enabled and keda.enabled exclude each other",
        ),
        (
            ("kafka.securityProtocol=SASL_SSL", "kafka.sasl.username=u"),
            "kafka.sasl.passwordSecret.name is required",
        ),
        (
            ("kafka.securityProtocol=SASL_PLAINTEXT", "kafka.sasl.passwordSecret.name=p"),
            "kafka.sasl.username or kafka.sasl.usernameSecret.name is required",
        ),
        (("kafka.tls.caSecret.name=ca",), "kafka.tls secrets are only used with SSL or SASL_SSL"),
        (("push.apns.keySecret.name=apns",), "push.apns.keySecret needs push.apns.keyId"),
    ],
)
def test_bad_values_are_refused(sets: tuple[str, ...], message: str) -> None:
    assert message in render_error((), sets)
