"""One partition step, without Kafka: records in, changelog/output records and follow-up work out."""

from __future__ import annotations

import json
from dataclasses import dataclass

from devtools import traffic
from service.config_builders import decode_limits
from service.domain.reports import FanOutFinished
from service.domain.rounds import DeviceRef
from service.partition.step import PartitionStep
from service.settings import Settings
from service.state.changelog import decode_state
from service.state.store import PartitionStore
from service.wire.rejection import Reason
from tests.unit.factories import T0, agent, world

SETTINGS = Settings()


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    offset: int
    timestamp: int = T0
    topic: str = SETTINGS.topic_chat_events
    partition: int = 4
    timestamp_type: int = 0


def step() -> PartitionStep:
    return PartitionStep(SETTINGS, world(agent()), decode_limits(SETTINGS))


def request_record(chat_id: str, offset: int, tta: int = 30) -> Record:
    value = traffic.handoff_requested(
        chat_id, "site-1", T0, time_to_accept_seconds=tta, event_id=f"r-{chat_id}"
    )
    return Record(chat_id.encode(), value, offset)


def test_a_request_writes_the_round_to_its_changelog_partition_and_asks_for_pushes() -> None:
    store = PartitionStore(4)
    result = step().run(store, [request_record("c1", 10)], [], fire_until_ms=T0, now_ms=T0)
    [changelog] = result.records
    assert (changelog.topic, changelog.partition, changelog.key) == (SETTINGS.topic_changelog, 4, b"c1")
    assert changelog.value is not None
    assert decode_state(changelog.value) == store.get("c1")
    assert len(result.pushes) == 1
    assert result.next_offset == 11
    assert result.started == 1
    assert result.consumed_types == ["livechat.chat.handoff_requested"]


def test_unusable_record_becomes_a_dead_letter_with_the_original_bytes_and_the_offset_still_advances() -> (
    None
):
    store = PartitionStore(4)
    result = step().run(store, [Record(b"c9", b"{oops", 7)], [], fire_until_ms=T0, now_ms=T0)
    [dead] = result.records
    assert dead.topic == SETTINGS.topic_dead_letter
    assert (dead.key, dead.value) == (b"c9", b"{oops")
    headers = dict(dead.headers)
    assert headers["reason"] == b"invalid_json"
    assert headers["source_offset"] == b"7"
    assert headers["source_partition"] == b"4"
    assert result.next_offset == 8
    assert result.rejected == [(SETTINGS.topic_chat_events, Reason.INVALID_JSON)]


def test_due_timers_fire_only_up_to_the_horizon() -> None:
    store = PartitionStore(4)
    core = step()
    core.run(store, [request_record("c1", 0, tta=1), request_record("c2", 1, tta=2)], [], T0, T0)
    result = core.run(store, [], [], fire_until_ms=T0 + 1_500, now_ms=T0 + 5_000)
    outputs = [
        json.loads(r.value)["data"]["chat_id"]
        for r in result.records
        if r.topic == SETTINGS.topic_missed and r.value
    ]
    assert outputs == ["c1"]
    assert result.next_offset is None
    assert [c.chat_id for c in result.closed] == ["c1"]


def test_fan_out_report_is_written_to_the_changelog() -> None:
    store = PartitionStore(4)
    core = step()
    core.run(store, [request_record("c1", 0)], [], T0, T0)
    delivered = (DeviceRef("agent-1", "agent-1-phone"),)
    result = core.run(store, [], [FanOutFinished(4, "c1", "r-c1", delivered)], T0, T0)
    [changelog] = result.records
    assert changelog.value is not None
    state = decode_state(changelog.value)
    assert getattr(state, "delivered", None) == delivered


def test_resume_returns_unfinished_fan_outs_still_in_time() -> None:
    store = PartitionStore(4)
    core = step()
    core.run(store, [request_record("c1", 0, tta=30)], [], T0, T0)
    assert len(core.resume(store, T0 + 1_000)) == 1
    assert core.resume(store, T0 + 30_000) == []


def test_unknown_types_are_dead_lettered_unless_tolerated() -> None:
    unknown = traffic.cloud_event("livechat.chat.typing", {"chat_id": "c1"})
    strict = step().run(PartitionStore(4), [Record(b"c1", unknown, 3)], [], T0, T0)
    assert [r.topic for r in strict.records] == [SETTINGS.topic_dead_letter]
    tolerant_settings = Settings(tolerate_unknown_event_types=True)
    tolerant = PartitionStep(tolerant_settings, world(agent()), decode_limits(tolerant_settings))
    result = tolerant.run(PartitionStore(4), [Record(b"c1", unknown, 3)], [], T0, T0)
    assert result.records == []
    assert result.ignored == ["unknown_type"]
    assert result.next_offset == 4
