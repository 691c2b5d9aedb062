"""The reminder: one alert, when the site asks for it (`reminder_after_seconds`), to the phones that
may show a round's request while the round is still pending, saying how long is left to accept.

At most one per round, also across restarts: the round records when its reminder is due
(`PendingRound.reminder_at_ms`) and the timer that sends it writes the round with the reminder
cleared in the same Kafka transaction, while the pushes go out only after that transaction
commits. A crash between the commit and the send loses the reminder; a replay, a restore or a
stale timer finds it cleared and sends nothing.

The reminder replaces the alert on the phone (same collapse id: the chat id) and expires at the
deadline, like the alert. It never names the visitor, so a locked screen may show it as it is.
"""

from __future__ import annotations

import math

from service.domain.alerts import address, eligible_refs
from service.domain.effects import Effect, PutState, ScheduleTimer, SendPushes
from service.domain.events import SiteSnapshot
from service.domain.push import LocalizedText, Provider, Push, PushKind
from service.domain.rounds import PendingRound
from service.domain.world import World

REMINDER_TITLE_KEY = "livechat_reminder_title"
"""Reminder title, args [site name]: "Visitor still waiting · %@"."""
REMINDER_TITLE_UNNAMED_KEY = "livechat_reminder_title_unnamed"
"""Reminder title of a site without a name, no args: "Visitor still waiting"."""
REMINDER_BODY_KEY = "livechat_reminder_body"
"""Reminder body, args [minutes left]: "A live chat visitor is still waiting. Accept within %@ min."."""


def reminder_at_ms(site: SiteSnapshot | None, requested_at_ms: int, deadline_ms: int, now_ms: int) -> int:
    """When a round starting now should remind its agents: the site's `reminder_after_s` after
    the request, if that is still ahead and before the deadline; -1 for no reminder (none asked
    for, the site unknown, or a request read so late that its reminder time already passed — it
    would buzz at the same moment as the alert)."""
    if site is None or site.reminder_after_s is None:
        return -1
    due_ms = requested_at_ms + site.reminder_after_s * 1000
    return due_ms if now_ms < due_ms < deadline_ms else -1


def reminder_due(state: PendingRound, now_ms: int) -> bool:
    """The round's reminder is due now (and its deadline still ahead)."""
    return state.reminder_at_ms != -1 and state.reminder_at_ms <= now_ms < state.deadline_ms


def remind(state: PendingRound, now_ms: int, world: World) -> list[Effect]:
    """The reminder's timer fired: write the round with its reminder cleared, arm the deadline's
    timer (after a restore only the reminder's was armed: `rounds.timer_due_ms`), and push the
    devices that may show the alert and whose agent is still eligible — an agent who switched
    availability or the site's toggle off since must not be buzzed again."""
    cleared = state.with_reminder_at(-1)
    effects: list[Effect] = [PutState(cleared), ScheduleTimer(state.chat_id, state.deadline_ms)]
    site = world.sites.get(state.site_id)
    if site is None:
        return effects
    eligible = set(eligible_refs(site, world))
    devices = tuple(ref for ref in state.may_show if ref in eligible)
    pushes = address(reminder_template(state, site, now_ms), devices, world)
    if pushes:
        # No delivery report: who got the reminder changes nothing in the round.
        effects.append(
            SendPushes(state.chat_id, state.request_id, state.requested_at_ms, pushes, report_delivery=False)
        )
    return effects


def minutes_left(state: PendingRound, now_ms: int) -> int:
    """Whole minutes left to accept, rounded up (at least 1): "accept within 2 min" stays true."""
    return max(1, math.ceil((state.deadline_ms - now_ms) / 60_000))


def reminder_template(state: PendingRound, site: SiteSnapshot, now_ms: int) -> Push:
    minutes = minutes_left(state, now_ms)
    data = {
        "type": PushKind.HANDOFF_REMINDER.value,
        "chat_id": state.chat_id,
        "site_id": state.site_id,
        "request_id": state.request_id,
        "open_tab": "active",
        "minutes_left": str(minutes),
    }
    if site.name:
        title, title_loc = (
            f"Visitor still waiting · {site.name}",
            LocalizedText(REMINDER_TITLE_KEY, (site.name,)),
        )
    else:
        title, title_loc = "Visitor still waiting", LocalizedText(REMINDER_TITLE_UNNAMED_KEY)
    return Push(
        provider=Provider.FCM,
        token="",
        kind=PushKind.HANDOFF_REMINDER,
        collapse_id=state.chat_id,
        expires_at_ms=state.deadline_ms,
        data=data,
        title=title,
        body=f"A live chat visitor is still waiting. Accept within {minutes} min.",
        title_loc=title_loc,
        body_loc=LocalizedText(REMINDER_BODY_KEY, (str(minutes),)),
    )
