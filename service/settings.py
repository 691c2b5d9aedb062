"""The worker's settings: one typed, frozen model, from a YAML file and `NOTIFIER_*` variables.

Environment variables override the file. Invalid values stop start-up with a message naming the
setting. Secrets are never values here, only paths to files (Kubernetes mounts Secrets as
files); `redacted()` is what gets logged. pydantic-settings was picked because it gives typed
env + YAML loading and per-field error messages without hand-written parsing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from service.errors import ConfigurationError

PositiveInt = Annotated[int, Field(gt=0)]
Port = Annotated[int, Field(ge=0, le=65535)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", frozen=True, extra="forbid")

    # Kafka
    kafka_bootstrap_servers: str = "localhost:9092"
    group_id: str = "livechat-notifier"
    transactional_id_prefix: str | None = None
    """Prefix of the per-partition transactional ids; defaults to the group id."""
    topic_chat_events: str = "livechat.chat-events"
    topic_agents: str = "livechat.agents"
    topic_sites: str = "livechat.sites"
    topic_missed: str = "livechat.chat-missed"
    topic_chatbot: str = "livechat.chatbot-commands"
    topic_push_feedback: str = "livechat.push-feedback"
    topic_dead_letter: str = "livechat.dead-letter"
    topic_changelog: str = "livechat.notifier-rounds-changelog"
    topic_commands: str = "livechat.notifier-commands"
    """Commands to the worker (`livechat.push.test_requested`), read by the group `<group_id>-commands`."""
    kafka_session_timeout_ms: PositiveInt = 10_000
    kafka_max_batch_records: PositiveInt = 2_000
    # Kafka security (TLS, SASL). Secrets are files: the SASL password is read from
    # kafka_sasl_password_file by service/kafka/connection.py, never given as a value.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, validate_default=True
    )
    kafka_sasl_username: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, validate_default=True
    )
    kafka_sasl_password_file: Path | None = Field(default=None, validate_default=True)
    kafka_ssl_ca_file: Path | None = Field(default=None, validate_default=True)
    """Trusted CA (PEM) for the brokers' certificates; default: the system's trust store."""
    kafka_ssl_cert_file: Path | None = Field(default=None, validate_default=True)
    """Client certificate (PEM) for mutual TLS, with kafka_ssl_key_file."""
    kafka_ssl_key_file: Path | None = Field(default=None, validate_default=True)
    event_source: str = "urn:livechat-notifier"
    """CloudEvents `source` of the events the worker produces."""

    # Rounds
    default_time_to_accept_seconds: PositiveInt = 120
    max_time_to_accept_seconds: PositiveInt = 86_400
    dedup_window_seconds: PositiveInt = 3_600
    clock_skew_seconds: Annotated[int, Field(ge=0)] = 300
    max_event_age_seconds: PositiveInt = 7 * 86_400
    max_value_bytes: PositiveInt = 1_048_576
    closing_updates: bool = True
    closing_update_ttl_seconds: PositiveInt = 600
    chatbot_max_delay_seconds: Annotated[int, Field(ge=0)] = 300
    """A round reported missed later than this after its deadline (a replay, a backfill, a
    long outage) gets no chatbot message: the Missed is still emitted, marked late."""
    producer_clock_tolerance_seconds: Annotated[int, Field(ge=0)] = 30
    """On a chat-events topic with CreateTime timestamps (producers' clocks), how far ahead a
    producer's clock may be: the backlog gate trusts a record's timestamp only minus this.
    Not used for LogAppendTime records (the broker's clock), which `topics ensure` sets up."""
    tolerate_unknown_event_types: bool = False
    """Count and skip chat events of an unknown `type` instead of dead-lettering them (for a
    producer that starts emitting new types before this worker knows them)."""
    dead_letter_redact_personal_data: bool = False
    """Dead letters without personal data (visitor, e-mail, phone, token, display name members
    replaced by a marker; a value that is not JSON dropped), marked by a `redacted` header. Off:
    the original bytes, which a replay needs (docs/dead-letters.md)."""

    # Push
    fcm_credentials_file: Path | None = None
    fcm_endpoint: str = "https://fcm.googleapis.com"
    apns_key_file: Path | None = None
    apns_key_id: str | None = None
    apns_team_id: str | None = None
    apns_topic: str | None = None
    apns_endpoint: str = "https://api.push.apple.com:443"
    apns_sandbox_endpoint: str = "https://api.sandbox.push.apple.com:443"
    apns_ca_file: Path | None = None
    push_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    # How pushes look on the phone (README "Behaviour": the platform rule behind each default)
    apns_interruption_level: Literal["time-sensitive", "active"] = "time-sensitive"
    """iOS alerts: `time-sensitive` breaks through Focus (when the user allows it for the app)."""
    apns_sound: str = "default"
    """The alert's sound: a sound file in the app bundle, `default` (the system sound), "" none."""
    apns_closing_update: Literal["alert", "background"] = "alert"
    """`alert`: a quiet (passive) alert replaces the request; `background`: a silent push, which
    iOS throttles (a few per hour, none to a force-quit app)."""
    fcm_channel_id: Annotated[str, Field(min_length=1)] = "live_chat_requests"
    """Android notification channel of the alerts; the app creates it (high importance)."""
    fcm_closing_channel_id: Annotated[str, Field(min_length=1)] = "live_chat_updates"
    """Android notification channel of the closing updates; the app creates it (low importance)."""
    fcm_closing_update: Literal["notification", "data"] = "notification"
    """`notification`: a replacing notification under the alert's tag; `data`: a data message,
    which needs the app's code to run (not after a force stop)."""
    push_max_in_flight: PositiveInt = 200
    """Concurrent pushes per provider."""
    push_queue_max_bytes: Annotated[int, Field(ge=1_048_576)] = 67_108_864
    """Estimated memory of the pushes queued per provider (64 MiB, about 43,000 alert pushes) from
    which the worker stops reading chat events until the queue drains; live pushes are never dropped."""

    # Operations
    http_host: str = "0.0.0.0"  # noqa: S104 -- probes and scraping come from outside the pod
    http_port: Port = 8080
    shutdown_grace_seconds: Annotated[float, Field(gt=0)] = 20.0
    log_level: str = "INFO"

    @field_validator("fcm_credentials_file", "apns_key_file", "apns_ca_file")
    @classmethod
    def _readable_file(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"file {str(path)!r} does not exist or is not a file")
        return path

    @field_validator(
        "kafka_sasl_mechanism",
        "kafka_sasl_username",
        "kafka_sasl_password_file",
        "kafka_ssl_ca_file",
        "kafka_ssl_cert_file",
        "kafka_ssl_key_file",
    )
    @classmethod
    def _kafka_security(cls, value: Any, info: ValidationInfo) -> Any:
        """Each setting fits the security protocol; files exist. Runs in field order, after the protocol."""
        protocol = info.data.get("kafka_security_protocol")
        name = info.field_name or ""
        if protocol is None:  # the protocol itself is invalid and reported on its own
            return value
        sasl, tls = protocol.startswith("SASL_"), protocol.endswith("SSL")
        if name.startswith("kafka_sasl_"):
            if sasl and value is None:
                raise ValueError(f"required when kafka_security_protocol is {protocol}")
            if not sasl and value is not None:
                raise ValueError(
                    f"only used with SASL_PLAINTEXT or SASL_SSL, but kafka_security_protocol is {protocol}"
                )
        elif not tls and value is not None:
            raise ValueError(f"only used with SSL or SASL_SSL, but kafka_security_protocol is {protocol}")
        cert_ok = "kafka_ssl_cert_file" in info.data  # else its own error is reported
        if (
            name == "kafka_ssl_key_file"
            and cert_ok
            and (value is None) != (info.data["kafka_ssl_cert_file"] is None)
        ):
            raise ValueError("kafka_ssl_cert_file and kafka_ssl_key_file (mutual TLS) go together: set both")
        if isinstance(value, Path) and not (value.is_file() and os.access(value, os.R_OK)):
            raise ValueError(f"file {str(value)!r} does not exist, is not a file or is not readable")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, level: str) -> str:
        if level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return level.upper()

    @property
    def apns_configured(self) -> bool:
        return None not in (self.apns_key_file, self.apns_key_id, self.apns_team_id, self.apns_topic)

    @property
    def transactional_prefix(self) -> str:
        return self.transactional_id_prefix or self.group_id

    def redacted(self) -> dict[str, Any]:
        """Settings fit for a log line: file paths are shown, never file contents."""
        return {
            key: str(value) if isinstance(value, Path) else value for key, value in self.model_dump().items()
        }

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 -- signature fixed by pydantic-settings
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML path travels as a private init kwarg so one Settings class serves both cases.
        yaml_file = init_settings.init_kwargs.pop("_config_file", None)  # type: ignore[attr-defined]
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if yaml_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load and validate settings; raise ConfigurationError naming every bad setting."""
    if config_file is not None and not config_file.is_file():
        raise ConfigurationError(f"--config: file {str(config_file)!r} does not exist")
    try:
        if config_file is not None:
            return Settings(_config_file=config_file, **overrides)  # type: ignore[call-arg]
        return Settings(**overrides)
    except ValidationError as error:
        problems = []
        for problem in error.errors():
            name = ".".join(str(part) for part in problem["loc"]) or "settings"
            problems.append(f"NOTIFIER_{name.upper()} ({name}): {problem['msg']}")
        raise ConfigurationError("invalid settings:\n  " + "\n  ".join(problems)) from None
