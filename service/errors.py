"""The package's exception hierarchy: every boundary converts foreign exceptions into these."""

from __future__ import annotations


class NotifierError(Exception):
    """Base class of every error raised by livechat-notifier."""


class ConfigurationError(NotifierError):
    """Settings or credential files are invalid; start-up must stop with this message."""


class TopicLayoutError(NotifierError):
    """Kafka topics exist with a layout the worker cannot run on (e.g. partition counts differ)."""


class PushConfigurationError(NotifierError):
    """A push provider cannot be set up from the given credentials or endpoint."""


class KafkaConnectionFailedError(NotifierError):
    """No bootstrap server accepted a connection with the configured TLS / SASL settings."""


class KafkaAuthorizationError(NotifierError):
    """The broker refused the worker's principal an operation it needs (missing ACLs)."""
