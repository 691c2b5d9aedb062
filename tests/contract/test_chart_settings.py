"""The chart configures the worker the way the worker reads its settings.

The rendered ConfigMap's notifier.yaml, the container's environment and the Secrets mounted as
files are put together as the pod would see them (each mounted Secret item gets a real test
credential of its kind) and given to the real `livechat-notifier check-config`. And the chart's
values.schema.json knows every worker setting, with types that accept the worker's defaults.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from devtools.credentials import GeneratedCredentials, generate_credentials
from service.settings import Settings
from tests.contract.chart import ALL_FEATURES, CHART, HPA_OVERRIDES, REPO, Manifest, only, render

CHART_MANAGED = {
    "kafka_bootstrap_servers",
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password_file",
    "kafka_ssl_ca_file",
    "kafka_ssl_cert_file",
    "kafka_ssl_key_file",
    "fcm_credentials_file",
    "apns_key_file",
    "apns_key_id",
    "apns_team_id",
    "apns_topic",
    "apns_ca_file",
    "http_host",
    "http_port",
    "shutdown_grace_seconds",
}
"""Settings the chart derives from its own values; `config` may not set them."""

USERNAME_FROM_SECRET = "user-from-secret"


def _credential_for(item_path: str, credentials: GeneratedCredentials) -> bytes:
    """What a cluster's Secret would hold at the chart's mount path `item_path`."""
    files = {
        "kafka-sasl/password": None,
        "kafka-tls/ca.crt": credentials.ca_cert,
        "kafka-tls/client.crt": credentials.server_cert,
        "kafka-tls/client.key": credentials.server_key,
        "fcm/service-account.json": credentials.fcm_service_account,
        "apns/key.p8": credentials.apns_key,
        "apns/ca.crt": credentials.ca_cert,
    }
    assert item_path in files, f"the chart mounts {item_path!r}; teach this test what it holds"
    source = files[item_path]
    return b"kafka-password\n" if source is None else source.read_bytes()


def _pod_view(
    manifests: tuple[Manifest, ...], root: Path, credentials: GeneratedCredentials
) -> tuple[Path, dict[str, str]]:
    """Lay out the pod's settings file and Secrets under `root`; return the file and the environment."""
    deployment = only(manifests, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    secrets_dir = root / "secrets"
    root.mkdir(parents=True, exist_ok=True)
    for volume in pod["volumes"]:
        for source in volume.get("projected", {}).get("sources", []):
            for item in source["secret"]["items"]:
                target = secrets_dir / item["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(_credential_for(item["path"], credentials))
    settings = yaml.safe_load(
        only(manifests, "ConfigMap", deployment["metadata"]["name"])["data"]["notifier.yaml"]
    )
    for key, value in settings.items():
        if key.endswith("_file"):
            assert value.startswith(mounts["secrets"] + "/"), f"{key} points outside the mounted Secrets"
            settings[key] = str(secrets_dir / value.removeprefix(mounts["secrets"] + "/"))
    config = root / "notifier.yaml"
    config.write_text(yaml.safe_dump(settings))
    environment = {}
    for variable in container.get("env", []):
        if "value" in variable:
            environment[variable["name"]] = variable["value"]
        else:
            assert set(variable["valueFrom"]) == {"secretKeyRef"}
            environment[variable["name"]] = USERNAME_FROM_SECRET
    return config, environment


def _check_config(config: Path, environment: dict[str, str]) -> dict[str, Any]:
    """Run the worker's check-config as the container would; return the settings it logged."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("NOTIFIER_")}
    result = subprocess.run(
        [sys.executable, "-m", "service", "--config", str(config), "check-config"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=REPO,
        env=clean | environment,
    )
    assert result.returncode == 0, result.stderr
    (line,) = [json.loads(line) for line in result.stdout.splitlines() if '"config_ok"' in line]
    logged: dict[str, Any] = line["settings"]
    return logged


@pytest.mark.parametrize(
    "value_files",
    [(), (ALL_FEATURES,), (ALL_FEATURES, HPA_OVERRIDES)],
    ids=["defaults", "all-features-keda", "all-features-hpa"],
)
def test_worker_accepts_the_rendered_settings_and_secrets(
    value_files: tuple[Path, ...], tmp_path: Path
) -> None:
    credentials = generate_credentials(
        tmp_path / "credentials", fcm_token_uri="https://oauth2.example.com/token"
    )
    manifests = render(value_files)
    config, environment = _pod_view(manifests, tmp_path / "pod", credentials)
    logged = _check_config(config, environment)
    # Every setting the chart wrote reached the worker unchanged (none was ignored or renamed).
    written = yaml.safe_load(config.read_text()) | {
        name.removeprefix("NOTIFIER_").lower(): value
        for name, value in environment.items()
        if name.startswith("NOTIFIER_")
    }
    assert {key: logged[key] for key in written} == written


def test_all_features_turn_on_every_credential() -> None:
    """The all-features render exercises every Secret the worker can read (else the test above misses one)."""
    manifests = render((ALL_FEATURES,))
    deployment = only(manifests, "Deployment")
    settings = yaml.safe_load(
        only(manifests, "ConfigMap", deployment["metadata"]["name"])["data"]["notifier.yaml"]
    )
    file_settings = {name for name in Settings.model_fields if name.endswith("_file")}
    assert file_settings <= set(settings)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert [
        variable["name"] for variable in container["env"] if variable["name"].startswith("NOTIFIER_")
    ] == ["NOTIFIER_KAFKA_SASL_USERNAME"]


def test_values_schema_knows_every_worker_setting() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    config = schema["properties"]["config"]
    assert config["additionalProperties"] is False
    passed_through = set(config["properties"])
    assert not passed_through & CHART_MANAGED
    unknown_to_chart = set(Settings.model_fields) - passed_through - CHART_MANAGED
    assert not unknown_to_chart, (
        f"new worker settings {sorted(unknown_to_chart)}: add them to config.properties in "
        "deploy/helm/livechat-notifier/values.schema.json (or derive them in the chart and list them here)"
    )
    assert passed_through | CHART_MANAGED == set(Settings.model_fields), (
        "the chart knows settings the worker lost"
    )


@pytest.mark.parametrize("name", sorted(set(Settings.model_fields) - CHART_MANAGED))
def test_values_schema_accepts_the_worker_default(name: str) -> None:
    property_schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["config"][
        "properties"
    ][name]
    default = Settings.model_fields[name].default
    jsonschema.validate(default, property_schema)


def test_chart_defaults_match_the_worker_defaults() -> None:
    """Values the chart sets by default are the worker's own defaults, so docs and behaviour agree."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    fields = Settings.model_fields
    for name, value in values["config"].items():
        assert value == fields[name].default, name
    assert values["shutdownGraceSeconds"] == fields["shutdown_grace_seconds"].default
    assert values["httpPort"] == fields["http_port"].default
    assert values["kafka"]["securityProtocol"] == fields["kafka_security_protocol"].default


def _undocumented_keys(lines: list[str]) -> list[str]:
    """Keys of values.yaml without a comment (a parent mapping may go without one if its keys have them).

    A comment block starting with `# --` describes the key's whole default value, nested keys included.
    """
    missing: list[str] = []
    covered_below: int | None = None  # indentation under which a described value continues
    comment_block: list[str] = []
    for raw in lines:
        line = raw.rstrip()
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if not stripped:
            comment_block = []
            continue
        if covered_below is not None and indent > covered_below:
            continue
        covered_below = None
        if stripped.startswith("#"):
            comment_block.append(stripped)
            continue
        match = re.match(r"([A-Za-z_][\w.-]*):(.*)$", stripped)
        if match is not None:
            if (comment_block and comment_block[0].startswith("# --")) or "# --" in match[2]:
                covered_below = indent
            elif not comment_block and "#" not in match[2] and match[2].strip():
                missing.append(match[1])
        comment_block = []
    return missing


def test_values_are_documented_line_by_line() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    assert _undocumented_keys(lines) == []
    assert _undocumented_keys(["a:", "  b: 1", "# -- c", "c:", "  d: 2", "# e", "e:", "  f: 3"]) == ["b", "f"]
