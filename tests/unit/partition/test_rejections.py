"""The one rejection reporter: the same dead letter, log line and metric for every topic."""

from __future__ import annotations

from dataclasses import dataclass

from structlog.testing import capture_logs

from service.observability.metrics import Metrics
from service.partition.rejections import RejectionReporter, count_rejected
from service.wire.rejection import Reason, Rejection


@dataclass(frozen=True)
class Record:
    key: bytes | None = b"agent-7"
    value: bytes | None = b"{not json"
    topic: str = "livechat.agents"
    partition: int = 2
    offset: int = 41
    timestamp: int = 0
    timestamp_type: int = 0


def test_the_dead_letter_is_the_untouched_original_with_why_and_where_in_headers() -> None:
    reporter = RejectionReporter("livechat.dead-letter", "snapshot_rejected")
    with capture_logs():
        dead = reporter.reject(Record(), Rejection(Reason.INVALID_JSON, "line 1"), agent_id=None)
    assert (dead.topic, dead.key, dead.value, dead.partition) == (
        "livechat.dead-letter",
        b"agent-7",
        b"{not json",
        None,
    )
    assert dict(dead.headers) == {
        "reason": b"invalid_json",
        "detail": b"line 1",
        "source_topic": b"livechat.agents",
        "source_partition": b"2",
        "source_offset": b"41",
    }


def test_the_log_line_names_the_event_where_it_came_from_why_and_the_ids_given() -> None:
    reporter = RejectionReporter("livechat.dead-letter", "event_rejected")
    with capture_logs() as logs:
        reporter.reject(Record(), Rejection(Reason.BAD_DATA, "chat_id missing"), chat_id="c1", site_id=None)
    assert logs == [
        {
            "event": "event_rejected",
            "log_level": "warning",
            "topic": "livechat.agents",
            "partition": 2,
            "offset": 41,
            "reason": "bad_data",
            "detail": "chat_id missing",
            "chat_id": "c1",
            "site_id": None,
        }
    ]


def test_a_rejection_is_counted_by_topic_and_reason() -> None:
    metrics = Metrics(["livechat.agents"])
    count_rejected(metrics, "livechat.agents", Reason.TOO_LARGE)
    sample = metrics.registry.get_sample_value(
        "notifier_events_rejected_total", {"topic": "livechat.agents", "reason": "too_large"}
    )
    assert sample == 1.0


def test_with_redaction_on_the_dead_letter_holds_no_personal_data_and_says_so_in_a_header() -> None:
    reporter = RejectionReporter("livechat.dead-letter", "event_rejected", redact_personal_data=True)
    email = b"ada@example.org"
    request = Record(value=b'{"type": "x", "data": {"visitor": {"email": "' + email + b'"}}}')
    with capture_logs():
        dead = reporter.reject(request, Rejection(Reason.BAD_DATA, "requested_at"), chat_id="c1")
        not_json = reporter.reject(Record(), Rejection(Reason.INVALID_JSON, "line 1"), chat_id="c1")
    assert dead.value == b'{"type":"x","data":{"visitor":"[redacted]"}}'
    assert dict(dead.headers)["redacted"] == b"fields"
    assert dict(dead.headers)["reason"] == b"bad_data"
    assert (not_json.value, dict(not_json.headers)["redacted"]) == (None, b"body")
