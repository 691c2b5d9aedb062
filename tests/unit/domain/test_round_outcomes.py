"""Per-device outcomes (#12): what the fan-out reports is kept in the round, the Missed report
says per agent what came of each device, and a closed round carries what the request-to-accept
and unreachable metrics need."""

from __future__ import annotations

from service.domain.decide import on_chat_event, on_fan_out_finished, on_timer
from service.domain.effects import (
    UNCONFIRMED,
    DeviceOutcome,
    Effect,
    EmitMissed,
    NotifiedAgent,
    NotifiedDevice,
    PutState,
    RoundClosed,
)
from service.domain.events import AgentSnapshot
from service.domain.rounds import DeviceRef, PendingRound
from tests.unit.factories import T0, agent, device, ended, joined, only, request, world

A1 = agent("agent-1", devices=(device("a-ok"), device("a-unsure"), device("a-dead")))
A2 = agent("agent-2", devices=(device("b-failed"), device("b-expired"), device("b-later")))
REFS = {
    name: DeviceRef(agent_id, name)
    for agent_id, names in (
        ("agent-1", ("a-ok", "a-unsure", "a-dead")),
        ("agent-2", ("b-failed", "b-expired", "b-later")),
    )
    for name in names
}
DEADLINE = T0 + 60_000


def round_of(effects: list[Effect]) -> PendingRound:
    (put,) = only(effects, PutState)
    assert isinstance(put.state, PendingRound)
    return put.state


def started(*agents: AgentSnapshot) -> PendingRound:
    return round_of(on_chat_event(None, request(), T0, world(*agents)))


def reported(state: PendingRound, **lists: tuple[str, ...]) -> PendingRound:
    """`state` after a fan-out report naming devices by id (covered: every listed device)."""
    refs = {key: tuple(REFS[name] for name in names) for key, names in lists.items()}
    covered, delivered = refs.pop("covered", None), refs.pop("delivered", ())
    return round_of(on_fan_out_finished(state, state.request_id, delivered, covered, **refs))


def closed(effects: list[Effect]) -> RoundClosed:
    (event,) = only(effects, RoundClosed)
    return event


def test_fan_out_reports_merge_rejected_and_failed_devices_once() -> None:
    round_ = started(A1, A2)
    first = reported(
        round_,
        covered=("a-ok", "a-unsure", "a-dead", "b-failed"),
        delivered=("a-ok",),
        unsure=("a-unsure",),
        rejected=("a-dead",),
        failed=("b-failed",),
    )
    again = reported(first, covered=("b-later", "a-dead"), rejected=("a-dead",), failed=("b-later",))
    assert again.rejected == (REFS["a-dead"],)
    assert again.failed == (REFS["b-failed"], REFS["b-later"])
    assert again.unsure == (REFS["a-unsure"],)


def test_a_round_without_rejections_or_failures_keeps_the_shared_empty_tuples() -> None:
    round_ = started(A1)
    done = reported(round_, covered=("a-ok", "a-unsure", "a-dead"), delivered=("a-ok", "a-unsure", "a-dead"))
    assert done.rejected is () and done.failed is ()  # noqa: F632 -- identity is the point: no copy


def test_missed_says_per_agent_what_came_of_each_device_and_keeps_the_counts() -> None:
    round_ = started(A1, A2)
    round_ = reported(
        round_,
        covered=("a-ok", "a-unsure", "a-dead", "b-failed", "b-expired"),
        delivered=("a-ok",),
        unsure=("a-unsure",),
        rejected=("a-dead",),
        failed=("b-failed",),
    )
    (missed,) = only(on_timer(round_, DEADLINE, world(A1, A2)), EmitMissed)
    assert missed.notified == (
        NotifiedAgent(
            "agent-1",
            (
                NotifiedDevice("a-ok", DeviceOutcome.DELIVERED),
                NotifiedDevice("a-unsure", DeviceOutcome.FAILED, UNCONFIRMED),
                NotifiedDevice("a-dead", DeviceOutcome.TOKEN_REJECTED),
            ),
        ),
        NotifiedAgent(
            "agent-2",
            (
                NotifiedDevice("b-failed", DeviceOutcome.FAILED),
                NotifiedDevice("b-expired", DeviceOutcome.PENDING),  # covered, in no list: expired
                NotifiedDevice("b-later", DeviceOutcome.PENDING),  # its fan-out never reported
            ),
        ),
    )
    # As before #12: delivered devices plus those still awaited.
    assert (missed.agents_notified, missed.devices_notified) == (2, 2)


def test_a_missed_round_whose_fan_out_never_reported_lists_every_device_as_pending() -> None:
    (missed,) = only(on_timer(started(A1), DEADLINE, world(A1)), EmitMissed)
    assert [d.outcome for agent_ in missed.notified for d in agent_.devices] == [DeviceOutcome.PENDING] * 3
    assert missed.devices_notified == 3


def test_a_missed_round_that_chose_nobody_lists_nobody() -> None:
    (missed,) = only(on_timer(started(), DEADLINE, world()), EmitMissed)
    assert missed.notified == ()


def test_an_accepted_round_carries_the_time_from_request_to_join() -> None:
    round_ = started(A1)
    assert (
        closed(on_chat_event(round_, joined(at_ms=T0 + 12_345), T0 + 13_000, world(A1))).accepted_after_ms
        == 12_345
    )
    # The join counts at its trusted time: never later than when it arrived.
    assert (
        closed(on_chat_event(round_, joined(at_ms=T0 + 20_000), T0 + 15_000, world(A1))).accepted_after_ms
        == 15_000
    )
    # A join stamped before the request by a slow clock: zero, not negative.
    assert closed(on_chat_event(round_, joined(at_ms=T0 - 500), T0 + 1_000, world(A1))).accepted_after_ms == 0


def test_only_accepted_rounds_carry_a_time_to_accept() -> None:
    round_ = started(A1)
    assert closed(on_chat_event(round_, ended(), T0 + 1_000, world(A1))).accepted_after_ms == -1
    assert closed(on_timer(round_, DEADLINE, world(A1))).accepted_after_ms == -1


def test_a_round_that_reached_no_phone_is_unreachable_whatever_its_outcome() -> None:
    nobody = started()
    all_failed = reported(started(A1), covered=("a-ok", "a-unsure", "a-dead"), failed=("a-ok", "a-unsure"))
    for round_ in (nobody, all_failed):
        assert closed(on_timer(round_, DEADLINE, world(A1))).unreachable
        assert closed(on_chat_event(round_, joined(), T0 + 1_000, world(A1))).unreachable
        assert closed(on_chat_event(round_, ended(), T0 + 1_000, world(A1))).unreachable


def test_a_round_that_reached_a_phone_or_may_have_is_not_unreachable() -> None:
    cases = {
        "one device delivered": reported(started(A1), covered=("a-ok", "a-dead"), delivered=("a-ok",)),
        "one device unsure": reported(started(A1), covered=("a-unsure",), unsure=("a-unsure",)),
        "fan-out not reported yet: unknown, not counted": started(A1),
        "a later fan-out still out": reported(
            started(A1), covered=("a-ok", "a-unsure"), failed=("a-ok", "a-unsure")
        ),
    }
    for why, round_ in cases.items():
        assert not closed(on_timer(round_, DEADLINE, world(A1))).unreachable, why
        assert not closed(on_chat_event(round_, joined(), T0 + 1_000, world(A1))).unreachable, why


def test_a_request_read_after_its_deadline_is_not_counted_unreachable() -> None:
    round_ = round_of(on_chat_event(None, request(), DEADLINE + 5, world(A1)))
    assert round_.expired_on_arrival
    assert not closed(on_timer(round_, DEADLINE + 5, world(A1))).unreachable
