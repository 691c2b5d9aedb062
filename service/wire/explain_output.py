"""The output of `livechat-notifier explain agent`: a JSON document for machines, a table for people.

Both say the same: per site, pushed or not, the reasons (`NotPushedReason` codes), and the agent's
devices by id, provider and APNs environment — never a token — with the token rejection that
takes a device out. Both also say which rejections were left out because they are not newer than
the agent's snapshot (the worker forgets them when a newer snapshot arrives), since that is the
first thing to doubt when a phone that "was rejected" is reported as pushed.
"""

from __future__ import annotations

import json
from typing import Any

from service.domain.eligibility import AgentExplanation, DeviceVerdict, KnownRejection, SiteVerdict
from service.wire.outbound import rfc3339

REJECTION_RULE = (
    "a token rejection counts only if it is newer than the agent's snapshot: the worker forgets an "
    "agent's rejections when a newer snapshot arrives (the app registered again)"
)


def explanation_json(explanation: AgentExplanation, snapshot_at_ms: int | None) -> str:
    document: dict[str, Any] = {
        "agent_id": explanation.agent_id,
        "agent_known": explanation.agent_known,
        "account_id": explanation.account_id,
        "snapshot_at": None if snapshot_at_ms is None else rfc3339(snapshot_at_ms),
        "sites": [_site_json(verdict) for verdict in explanation.sites],
        "ignored_rejections": [_rejection_json(r) for r in explanation.ignored_rejections],
        "rejection_rule": REJECTION_RULE,
    }
    return json.dumps(document, indent=2, ensure_ascii=False)


def _site_json(verdict: SiteVerdict) -> dict[str, Any]:
    return {
        "site_id": verdict.site_id,
        "name": verdict.site_name,
        "account_id": verdict.account_id,
        "pushed": verdict.pushed,
        "reasons": [reason.value for reason in verdict.reasons],
        "devices": [_device_json(device, pushed=verdict.pushed) for device in verdict.devices],
    }


def _device_json(device: DeviceVerdict, *, pushed: bool) -> dict[str, Any]:
    return {
        "device_id": device.device_id,
        "provider": device.provider.value,
        "apns_environment": None if device.apns_environment is None else device.apns_environment.value,
        "pushed": pushed and device.pushed,
        "rejection": None if device.rejection is None else _rejection_json(device.rejection),
    }


def _rejection_json(rejection: KnownRejection) -> dict[str, str]:
    return {
        "device_id": rejection.device_id,
        "provider": rejection.provider.value,
        "reason": rejection.reason,
        "rejected_at": rfc3339(rejection.rejected_at_ms),
    }


def explanation_table(explanation: AgentExplanation, snapshot_at_ms: int | None) -> str:
    """One line per site, then the rejections, for a terminal."""
    if not explanation.agent_known:
        unknown = "unknown — no snapshot on the agents topic (never sent, or deleted)"
        lines = [f"agent {explanation.agent_id}: {unknown}"]
    else:
        pushed = sum(verdict.pushed for verdict in explanation.sites)
        since = "" if snapshot_at_ms is None else f", snapshot of {rfc3339(snapshot_at_ms)}"
        heading = f"agent {explanation.agent_id} (account {explanation.account_id}{since})"
        lines = [f"{heading}: pushed for {pushed} of {len(explanation.sites)} site(s)"]
    rows = [("SITE", "NAME", "VERDICT", "REASONS", "DEVICES")]
    rows.extend(
        (
            verdict.site_id,
            verdict.site_name or "-",
            "pushed" if verdict.pushed else "NOT pushed",
            ", ".join(verdict.reasons) or "-",
            ", ".join(_device_text(device, pushed=verdict.pushed) for device in verdict.devices) or "-",
        )
        for verdict in explanation.sites
    )
    if explanation.sites:
        widths = [max(len(row[column]) for row in rows) for column in range(4)]
        lines.extend(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4]
            for row in rows
        )
    rejected = {
        device.device_id: device.rejection
        for verdict in explanation.sites
        for device in verdict.devices
        if device.rejection is not None
    }
    lines.extend(
        f"token rejected: {device_id} ({r.provider}) at {rfc3339(r.rejected_at_ms)}, {r.reason}"
        for device_id, r in sorted(rejected.items())
    )
    lines.extend(
        f"ignored (not newer than the snapshot): {r.device_id} ({r.provider}) rejected at "
        f"{rfc3339(r.rejected_at_ms)}, {r.reason}"
        for r in explanation.ignored_rejections
    )
    if rejected or explanation.ignored_rejections:
        lines.append(f"note: {REJECTION_RULE}")
    return "\n".join(lines)


def _device_text(device: DeviceVerdict, *, pushed: bool) -> str:
    kind = device.provider.value if device.apns_environment is None else f"apns/{device.apns_environment}"
    if device.rejection is not None:
        return f"{device.device_id} ({kind}, token rejected)"
    return f"{device.device_id} ({kind})" if pushed else f"{device.device_id} ({kind}, not pushed)"
