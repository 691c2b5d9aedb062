"""One processing step of one partition: records, fan-out reports and due timers in; the
records to write in the partition's transaction and the work to do after it commits out.

The step applies the core's effects to the partition's store as it goes. The store is thus
ahead of Kafka until the transaction commits; if the transaction fails, the worker throws the
store away and restores the partition from the changelog (see service/kafka/ownership.py), so
memory never keeps a change Kafka rolled back.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import assert_never

import structlog

from service.domain.decide import (
    World,
    on_chat_event,
    on_eligibility_changed,
    on_fan_out_finished,
    on_timer,
    on_token_rejected,
    resume_fan_out,
)
from service.domain.effects import (
    Effect,
    EmitChatbotMessage,
    EmitMissed,
    EmitTokenRejected,
    ForgetChat,
    Ignored,
    IgnoredWhy,
    Noted,
    PutState,
    RoundClosed,
    ScheduleTimer,
    SendPushes,
)
from service.domain.events import ChatEvent
from service.domain.reports import DeviceRejected, FanOutFinished, FanOutReport
from service.partition.records import LOG_APPEND_TIME, ConsumedRecord, OutRecord
from service.partition.rejections import RejectionReporter
from service.settings import Settings
from service.state.changelog import encode_state
from service.state.store import PartitionStore
from service.wire.inbound import EVENT_TYPE_NAMES, DecodeLimits, decode_chat_event, decode_key
from service.wire.outbound import encode_chatbot_message, encode_missed, encode_token_rejected
from service.wire.rejection import Reason, Rejection
from service.wire.repair import Repair, described

log = structlog.get_logger(__name__)


MAX_TIMERS_PER_STEP = 1_000
"""Bounds the time one step holds the event loop when a backlog of deadlines falls due at once
(figures: docs/benchmarks.md, "Timers and the garbage collector"). The rest fire in the next
turns, which follow at once because the poll timeout is then 1 ms."""


@dataclass(slots=True)
class StepResult:
    """What one step did: records for the partition's transaction, and what to do and count once
    it committed."""

    records: list[OutRecord] = field(default_factory=list)
    pushes: list[SendPushes] = field(default_factory=list)
    closed: list[RoundClosed] = field(default_factory=list)
    noted: list[Noted] = field(default_factory=list)
    consumed_types: list[str] = field(default_factory=list)
    rejected: list[tuple[str, Reason]] = field(default_factory=list)
    repaired: list[tuple[str, Repair]] = field(default_factory=list)
    """(event type, repair) of each field repaired in a consumed event."""
    ignored: list[IgnoredWhy] = field(default_factory=list)
    started: int = 0
    next_offset: int | None = None
    """Offset to commit for the input partition (last consumed + 1), if records were consumed."""

    @property
    def empty(self) -> bool:
        return not self.records and not self.pushes and self.next_offset is None


class PartitionStep:
    """Runs the core for one partition and turns its effects into records and follow-up work."""

    def __init__(self, settings: Settings, world: World, limits: DecodeLimits) -> None:
        self._settings = settings
        self._world = world
        self._limits = limits
        self._rejections = RejectionReporter(
            settings.topic_dead_letter, "event_rejected", settings.dead_letter_redact_personal_data
        )

    def run(
        self,
        store: PartitionStore,
        records: list[ConsumedRecord],
        reports: list[FanOutReport],
        fire_until_ms: int,
        now_ms: int,
        sites_changed: Collection[str] = (),
    ) -> StepResult:
        """`sites_changed`: sites whose eligible devices may have grown since the last step (a
        site or agent snapshot arrived): their pending rounds push the newly eligible devices."""
        result = StepResult()
        for record in records:
            self._consume(store, record, now_ms, result)
            result.next_offset = record.offset + 1
        for site_id in sites_changed:
            rounds = store.pending_for_site(site_id)
            self._apply(store, on_eligibility_changed(site_id, rounds, now_ms, self._world), result)
        for report in reports:
            if isinstance(report, FanOutFinished):
                state = store.get(report.chat_id)
                finished = on_fan_out_finished(
                    state,
                    report.request_id,
                    report.delivered,
                    report.covered,
                    report.unsure,
                    report.rejected,
                    report.failed,
                )
                self._apply(store, finished, result)
            elif isinstance(report, DeviceRejected):
                self._apply(store, on_token_rejected(report.rejection, now_ms), result)
        for chat_id in store.pop_due(fire_until_ms, MAX_TIMERS_PER_STEP):
            self._apply(store, on_timer(store.get(chat_id), now_ms, self._world), result)
        return result

    def resume(self, store: PartitionStore, now_ms: int) -> list[SendPushes]:
        """Fan-outs a crash interrupted, and devices eligible since, for rounds still in time
        (at-least-once pushes). The rounds' new targets are kept in memory only: the fan-out's
        report writes them to the changelog (a crash before that resumes them again)."""
        jobs: list[SendPushes] = []
        for state in store.pending_rounds():
            for effect in resume_fan_out(state, now_ms, self._world):
                if isinstance(effect, PutState):
                    store.put(effect.state)
                elif isinstance(effect, SendPushes):
                    jobs.append(effect)
        return jobs

    def _consume(
        self, store: PartitionStore, record: ConsumedRecord, now_ms: int, result: StepResult
    ) -> None:
        outcome = decode_chat_event(record.key, record.value, now_ms, self._limits)
        if isinstance(outcome, Rejection):
            if outcome.reason is Reason.UNKNOWN_TYPE and self._settings.tolerate_unknown_event_types:
                result.ignored.append(IgnoredWhy.UNKNOWN_TYPE)
                return
            self._dead_letter(record, outcome, result)
            return
        decoded, repairs = outcome
        if repairs:
            self._report_repairs(record, decoded, repairs, result)
        result.consumed_types.append(EVENT_TYPE_NAMES[type(decoded)])
        # The broker's append time bounds when the event happened; a producer's CreateTime does not.
        arrived_ms = record.timestamp if record.timestamp_type == LOG_APPEND_TIME else now_ms
        self._apply(
            store, on_chat_event(store.get(decoded.chat_id), decoded, now_ms, self._world, arrived_ms), result
        )

    def _apply(self, store: PartitionStore, effects: list[Effect], result: StepResult) -> None:
        settings = self._settings
        for effect in effects:
            match effect:
                case PutState(state=state):
                    result.started += store.put(state)
                    value = encode_state(state)
                    result.records.append(
                        OutRecord(settings.topic_changelog, state.chat_id.encode(), value, store.partition)
                    )
                case ForgetChat(chat_id=chat_id):
                    store.forget(chat_id)
                    result.records.append(
                        OutRecord(settings.topic_changelog, chat_id.encode(), None, store.partition)
                    )
                case ScheduleTimer(chat_id=chat_id, due_ms=due_ms):
                    store.schedule(chat_id, due_ms)
                case SendPushes():
                    result.pushes.append(effect)
                case EmitMissed() | EmitChatbotMessage() | EmitTokenRejected():
                    result.records.append(self._output(effect))
                case RoundClosed():
                    result.closed.append(effect)
                case Noted():
                    result.noted.append(effect)
                case Ignored(why=why):
                    result.ignored.append(why)
                case _:
                    assert_never(effect)

    def _output(self, effect: EmitMissed | EmitChatbotMessage | EmitTokenRejected) -> OutRecord:
        settings = self._settings
        source = settings.event_source
        match effect:
            case EmitMissed(chat_id=chat_id):
                return OutRecord(settings.topic_missed, chat_id.encode(), encode_missed(effect, source))
            case EmitChatbotMessage(chat_id=chat_id):
                value = encode_chatbot_message(effect, source)
                return OutRecord(settings.topic_chatbot, chat_id.encode(), value)
            case EmitTokenRejected(agent_id=agent_id):
                value = encode_token_rejected(effect, source)
                return OutRecord(settings.topic_push_feedback, agent_id.encode(), value)
            case _:
                assert_never(effect)

    def _report_repairs(
        self, record: ConsumedRecord, event: ChatEvent, repairs: tuple[Repair, ...], result: StepResult
    ) -> None:
        """The event is used all the same; its unusable optional fields are logged (names, never
        values) and counted after the commit."""
        event_type = EVENT_TYPE_NAMES[type(event)]
        result.repaired.extend((event_type, repair) for repair in repairs)
        log.warning(
            "event_repaired",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            type=event_type,
            chat_id=event.chat_id,
            site_id=event.site_id,
            repaired=described(repairs),
        )

    def _dead_letter(self, record: ConsumedRecord, rejection: Rejection, result: StepResult) -> None:
        chat_id = rejection.chat_id or decode_key(record.key)
        dead = self._rejections.reject(record, rejection, chat_id=chat_id, site_id=rejection.site_id)
        result.records.append(dead)
        result.rejected.append((record.topic, rejection.reason))
