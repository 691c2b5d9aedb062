"""Builds the configured push senders from settings (used by the composition root and the CLI).

`PROVIDERS` is the table: for each `Provider`, whether its credentials are configured, how they
are checked offline, and how its sender is made (with the settings of how its pushes look on the
phone: `ApnsStyle`, `FcmStyle`). A provider whose credentials are not configured
gets no sender: its devices' pushes are counted as skipped
(`notifier_pushes_skipped_total{why="no_sender"}`) and the rest of the worker runs.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.serialization import load_pem_private_key

from service.clock import Clock
from service.domain.push import Provider
from service.errors import ConfigurationError
from service.push.apns import ApnsSender
from service.push.apns_payload import ApnsStyle
from service.push.base import PushSender
from service.push.fcm import FcmSender
from service.push.fcm_payload import FcmStyle
from service.settings import Settings


@dataclass(frozen=True, slots=True)
class ProviderSetup:
    """How one provider's sender comes from the settings."""

    configured: Callable[[Settings], bool]
    check: Callable[[Settings], None]
    """Validate the credential files offline; errors name the setting, never the file's content."""
    create: Callable[[Settings, Clock], Awaitable[PushSender]]


def _fcm_configured(settings: Settings) -> bool:
    return settings.fcm_credentials_file is not None


def _check_fcm(settings: Settings) -> None:
    if settings.fcm_credentials_file is None:
        return
    try:
        account = json.loads(settings.fcm_credentials_file.read_text())
        missing = {"type", "project_id", "private_key", "client_email", "token_uri"} - set(account)
    except (OSError, ValueError) as error:
        raise ConfigurationError(
            f"NOTIFIER_FCM_CREDENTIALS_FILE: not a readable JSON file ({type(error).__name__})"
        ) from None
    if missing:
        raise ConfigurationError(f"NOTIFIER_FCM_CREDENTIALS_FILE: service account lacks {sorted(missing)}")


async def _create_fcm(settings: Settings, clock: Clock) -> PushSender:
    if settings.fcm_credentials_file is None:
        raise ConfigurationError("FCM is not configured")  # `configured` said it is
    return await FcmSender.create(
        service_account_file=settings.fcm_credentials_file,
        clock=clock,
        endpoint=settings.fcm_endpoint,
        timeout_s=settings.push_timeout_seconds,
        style=FcmStyle(
            channel_id=settings.fcm_channel_id,
            closing_channel_id=settings.fcm_closing_channel_id,
            closing_update=settings.fcm_closing_update,
        ),
    )


def _apns_configured(settings: Settings) -> bool:
    return bool(
        settings.apns_key_file and settings.apns_key_id and settings.apns_team_id and settings.apns_topic
    )


def _check_apns(settings: Settings) -> None:
    apns = (settings.apns_key_file, settings.apns_key_id, settings.apns_team_id, settings.apns_topic)
    if any(value is not None for value in apns) and not settings.apns_configured:
        raise ConfigurationError(
            "APNs needs all of NOTIFIER_APNS_KEY_FILE, NOTIFIER_APNS_KEY_ID, "
            "NOTIFIER_APNS_TEAM_ID and NOTIFIER_APNS_TOPIC"
        )
    if settings.apns_key_file is not None:
        try:
            load_pem_private_key(settings.apns_key_file.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as error:
            raise ConfigurationError(
                f"NOTIFIER_APNS_KEY_FILE: not a readable PEM private key ({type(error).__name__})"
            ) from None


async def _create_apns(settings: Settings, clock: Clock) -> PushSender:
    key_file, key_id, team_id, topic = (
        settings.apns_key_file,
        settings.apns_key_id,
        settings.apns_team_id,
        settings.apns_topic,
    )
    if not (key_file and key_id and team_id and topic):
        raise ConfigurationError("APNs is not configured")  # `configured` said it is
    return await ApnsSender.create(
        key_file=key_file,
        key_id=key_id,
        team_id=team_id,
        topic=topic,
        production_url=settings.apns_endpoint,
        sandbox_url=settings.apns_sandbox_endpoint,
        extra_ca_file=settings.apns_ca_file,
        timeout_s=settings.push_timeout_seconds,
        clock=clock,
        style=ApnsStyle(
            interruption_level=settings.apns_interruption_level,
            sound=settings.apns_sound,
            closing_update=settings.apns_closing_update,
        ),
    )


PROVIDERS: Mapping[Provider, ProviderSetup] = {
    Provider.FCM: ProviderSetup(_fcm_configured, _check_fcm, _create_fcm),
    Provider.APNS: ProviderSetup(_apns_configured, _check_apns, _create_apns),
}


async def build_senders(settings: Settings, clock: Clock) -> list[PushSender]:
    check_credentials(settings)
    return [await setup.create(settings, clock) for setup in PROVIDERS.values() if setup.configured(settings)]


def check_credentials(settings: Settings) -> None:
    """Validate credential files offline; errors name the setting, never the file's content."""
    for setup in PROVIDERS.values():
        setup.check(settings)
