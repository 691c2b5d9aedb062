"""Settings: YAML file, NOTIFIER_* overrides, errors that name the setting, secrets as paths only."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from service.__main__ import main
from service.errors import ConfigurationError
from service.settings import load_settings


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`main()` configures logging for the process; undo it so other tests keep theirs."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "notifier.yaml"
    config.write_text("group_id: from-file\nhttp_port: 9000\ntopic_missed: missed-from-file\n")
    monkeypatch.setenv("NOTIFIER_HTTP_PORT", "7000")
    settings = load_settings(config)
    assert (settings.group_id, settings.http_port, settings.topic_missed) == (
        "from-file",
        7000,
        "missed-from-file",
    )


def test_invalid_values_name_every_bad_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFIER_DEFAULT_TIME_TO_ACCEPT_SECONDS", "0")
    monkeypatch.setenv("NOTIFIER_APNS_KEY_FILE", "/nonexistent/key.p8")
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    message = str(error.value)
    assert "NOTIFIER_DEFAULT_TIME_TO_ACCEPT_SECONDS" in message
    assert "NOTIFIER_APNS_KEY_FILE" in message


def test_unknown_keys_in_the_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "notifier.yaml"
    config.write_text("grup_id: typo\n")
    with pytest.raises(ConfigurationError, match="grup_id"):
        load_settings(config)


def test_the_example_configuration_is_valid() -> None:
    settings = load_settings(Path(__file__).parents[2] / "config" / "notifier.example.yaml")
    assert settings.topic_chat_events == "livechat.chat-events"


def test_redacted_settings_show_paths_not_contents(tmp_path: Path) -> None:
    key = tmp_path / "AuthKey.p8"
    key.write_text("-----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----\n")
    settings = load_settings(apns_key_file=key)
    assert settings.redacted()["apns_key_file"] == str(key)
    assert "SECRET" not in str(settings.redacted())


def test_check_config_exits_non_zero_with_the_setting_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFIER_HTTP_PORT", "not-a-port")
    assert main(["check-config"]) == 2
    assert "NOTIFIER_HTTP_PORT" in capsys.readouterr().err


def test_check_config_rejects_a_broken_apns_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "AuthKey.p8"
    key.write_text("not a key")
    for name, value in {"KEY_FILE": str(key), "KEY_ID": "K", "TEAM_ID": "T", "TOPIC": "com.x"}.items():
        monkeypatch.setenv(f"NOTIFIER_APNS_{name}", value)
    assert main(["check-config"]) == 2
