"""`explain_agent`: one test per reason, the rejection-age rule, and a property test holding the
explanation to the rule fan-out really uses (`AgentDirectory.eligible_targets`)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.directory import AgentDirectory
from service.domain.eligibility import (
    AgentExplanation,
    KnownRejection,
    NotPushedReason,
    SiteVerdict,
    explain_agent,
)
from service.domain.events import AgentSnapshot, SiteSnapshot
from service.domain.push import ApnsEnvironment, Provider
from tests.unit.factories import T0, agent, device, site

R = NotPushedReason


def _sites(*snapshots: SiteSnapshot) -> dict[str, SiteSnapshot]:
    return {snapshot.site_id: snapshot for snapshot in snapshots}


def _only(explanation: AgentExplanation) -> SiteVerdict:
    (verdict,) = explanation.sites
    return verdict


def test_an_available_agent_with_the_toggle_on_is_pushed_on_every_device_without_tokens() -> None:
    phone = device("iphone", Provider.APNS, token="secret-token", apns_environment=ApnsEnvironment.SANDBOX)
    verdict = _only(explain_agent("agent-1", agent(devices=(phone, device("pixel"))), _sites(site())))
    assert verdict.pushed
    assert verdict.reasons == ()
    assert [(d.device_id, d.provider, d.apns_environment) for d in verdict.pushed_devices] == [
        ("iphone", Provider.APNS, ApnsEnvironment.SANDBOX),
        ("pixel", Provider.FCM, None),
    ]
    assert "secret-token" not in repr(verdict)


def test_an_unknown_agent_is_said_so() -> None:
    explanation = explain_agent("ghost", None, _sites(site()))
    assert not explanation.agent_known
    assert explanation.sites == ()
    given_site = _only(explain_agent("ghost", None, _sites(site()), only_site_id="site-1"))
    assert given_site.reasons == (R.AGENT_UNKNOWN,)


def test_availability_off() -> None:
    verdict = _only(explain_agent("agent-1", agent(available=False), _sites(site())))
    assert verdict.reasons == (R.AVAILABILITY_OFF,)


def test_toggle_off_and_toggle_absent_are_told_apart() -> None:
    snapshot = agent(push_enabled={"site-1": False})
    explanation = explain_agent("agent-1", snapshot, _sites(site(), site("site-2")))
    assert [(v.site_id, v.reasons) for v in explanation.sites] == [
        ("site-1", (R.TOGGLE_OFF,)),
        ("site-2", (R.TOGGLE_ABSENT,)),
    ]


def test_sites_of_other_accounts_are_left_out_unless_asked_for_or_toggled() -> None:
    sites = _sites(site(), site("foreign", "acct-2"), site("foreign-toggled", "acct-2"))
    snapshot = agent(push_enabled={"site-1": True, "foreign-toggled": True})
    explanation = explain_agent("agent-1", snapshot, sites)
    assert [(v.site_id, v.reasons) for v in explanation.sites] == [
        ("foreign-toggled", (R.OTHER_ACCOUNT,)),
        ("site-1", ()),
    ]
    asked = _only(explain_agent("agent-1", snapshot, sites, only_site_id="foreign"))
    assert asked.reasons == (R.OTHER_ACCOUNT, R.TOGGLE_ABSENT)


def test_a_site_nobody_published_is_unknown() -> None:
    snapshot = agent(push_enabled={"site-1": True, "gone": True})
    explanation = explain_agent("agent-1", snapshot, _sites(site()))
    assert [(v.site_id, v.reasons) for v in explanation.sites] == [
        ("gone", (R.SITE_UNKNOWN,)),
        ("site-1", ()),
    ]
    assert _only(explain_agent("agent-1", snapshot, {}, only_site_id="nope")).reasons == (
        R.SITE_UNKNOWN,
        R.TOGGLE_ABSENT,
    )


def test_no_devices() -> None:
    verdict = _only(explain_agent("agent-1", agent(devices=()), _sites(site())))
    assert verdict.reasons == (R.NO_DEVICES,)


def test_reasons_accumulate() -> None:
    snapshot = agent(available=False, push_enabled={}, devices=())
    verdict = _only(explain_agent("agent-1", snapshot, _sites(site())))
    assert verdict.reasons == (R.AVAILABILITY_OFF, R.TOGGLE_ABSENT, R.NO_DEVICES)


def _rejection(device_id: str, at_ms: int, reason: str = "Unregistered") -> KnownRejection:
    return KnownRejection(device_id, Provider.APNS, reason, at_ms)


def test_a_rejection_after_the_snapshot_takes_that_device_out() -> None:
    snapshot = agent(devices=(device("iphone", Provider.APNS), device("pixel")))
    explanation = explain_agent(
        "agent-1", snapshot, _sites(site()), snapshot_at_ms=T0, rejections=[_rejection("iphone", T0 + 1)]
    )
    verdict = _only(explanation)
    assert verdict.pushed
    assert [d.device_id for d in verdict.pushed_devices] == ["pixel"]
    (iphone, _) = verdict.devices
    assert iphone.rejection == _rejection("iphone", T0 + 1)


def test_every_device_rejected_is_token_rejected_with_the_latest_rejection() -> None:
    snapshot = agent(devices=(device("iphone", Provider.APNS),))
    rejections = [_rejection("iphone", T0 + 5, "BadDeviceToken"), _rejection("iphone", T0 + 9)]
    explanation = explain_agent("agent-1", snapshot, _sites(site()), snapshot_at_ms=T0, rejections=rejections)
    verdict = _only(explanation)
    assert verdict.reasons == (R.TOKEN_REJECTED,)
    assert verdict.pushed_devices == ()
    assert verdict.devices[0].rejection == _rejection("iphone", T0 + 9)


def test_rejections_not_newer_than_the_snapshot_are_forgotten_as_the_worker_forgets_them() -> None:
    snapshot = agent(devices=(device("iphone", Provider.APNS),))
    old = [_rejection("iphone", T0 - 1), _rejection("iphone", T0)]
    explanation = explain_agent("agent-1", snapshot, _sites(site()), snapshot_at_ms=T0, rejections=old)
    assert _only(explanation).pushed
    assert explanation.ignored_rejections == tuple(old)


# -- the property: explain agrees with fan-out ------------------------------------------------

_ids = st.sampled_from(["s1", "s2", "s3"])
_accounts = st.sampled_from(["a1", "a2"])
_devices = st.lists(
    st.builds(
        device,
        device_id=st.sampled_from(["d1", "d2", "d3"]),
        provider=st.sampled_from(list(Provider)),
        token=st.sampled_from(["t1", "t2"]),
    ),
    max_size=3,
    unique_by=lambda d: d.device_id,
).map(tuple)
_agents = st.builds(
    agent,
    agent_id=st.just("agent-x"),
    account_id=_accounts,
    available=st.booleans(),
    push_enabled=st.dictionaries(_ids, st.booleans(), max_size=3),
    devices=_devices,
)
_site_lists = st.lists(st.builds(site, site_id=_ids, account_id=_accounts), unique_by=lambda s: s.site_id)
_rejections = st.lists(
    st.builds(
        KnownRejection,
        device_id=st.sampled_from(["d1", "d2", "d3"]),
        provider=st.sampled_from(list(Provider)),
        reason=st.just("Unregistered"),
        rejected_at_ms=st.integers(T0 - 10, T0 + 10),
    ),
    max_size=4,
)


def _directory(
    target: AgentSnapshot, other: AgentSnapshot, rejections: list[KnownRejection]
) -> AgentDirectory:
    """The worker's directory after the same history: snapshot, then only the later rejections
    (an earlier one was dropped by the snapshot's upsert)."""
    directory = AgentDirectory()
    directory.upsert(other)
    for rejection in rejections:
        if rejection.rejected_at_ms <= T0:
            directory.mark_token_dead(target.agent_id, rejection.device_id, "whatever")
    directory.upsert(target)  # at T0: forgets what came before
    tokens = {d.device_id: d.token for d in target.devices}
    for rejection in rejections:
        if rejection.rejected_at_ms > T0 and rejection.device_id in tokens:
            directory.mark_token_dead(target.agent_id, rejection.device_id, tokens[rejection.device_id])
    return directory


@settings(max_examples=400, deadline=None)
@given(target=_agents, other=_agents, sites=_site_lists, rejections=_rejections)
def test_explain_says_pushed_exactly_when_fan_out_targets_the_agent(
    target: AgentSnapshot, other: AgentSnapshot, sites: list[SiteSnapshot], rejections: list[KnownRejection]
) -> None:
    other = AgentSnapshot("agent-y", other.account_id, True, other.push_enabled_by_site, other.devices)
    directory = _directory(target, other, rejections)
    known = _sites(*sites)
    for snapshot in sites:
        verdict = _only(
            explain_agent(
                target.agent_id,
                target,
                known,
                snapshot_at_ms=T0,
                rejections=rejections,
                only_site_id=snapshot.site_id,
            )
        )
        targeted = [
            t.device.device_id for t in directory.eligible_targets(snapshot) if t.agent_id == "agent-x"
        ]
        assert verdict.pushed == bool(targeted), (verdict, targeted)
        assert [d.device_id for d in verdict.pushed_devices] == targeted
    listed = {v.site_id for v in explain_agent(target.agent_id, target, known).sites}
    assert {s.site_id for s in sites if s.account_id == target.account_id} <= listed
