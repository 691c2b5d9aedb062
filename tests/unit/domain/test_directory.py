"""AgentDirectory's account index and the objects it shares between agents (directory scale, #13)."""

from __future__ import annotations

from service.domain.directory import MAX_SHARED_TOGGLES, AgentDirectory, Target
from tests.unit.factories import agent, device, site


def agent_ids(targets: tuple[Target, ...]) -> list[str]:
    return [target.agent_id for target in targets]


def test_targets_come_in_agent_id_order_whatever_the_order_of_arrival() -> None:
    directory = AgentDirectory()
    for agent_id in ("agent-3", "agent-1", "agent-2"):
        directory.upsert(agent(agent_id))
    directory.upsert(agent("agent-1"))  # an update does not add the agent twice

    assert agent_ids(directory.eligible_targets(site())) == ["agent-1", "agent-2", "agent-3"]


def test_an_agent_that_moved_to_another_account_is_pushed_for_its_new_account_only() -> None:
    directory = AgentDirectory()
    directory.upsert(agent("agent-1", "acct-1", push_enabled={"site-1": True, "site-2": True}))
    directory.upsert(agent("agent-2", "acct-1", push_enabled={"site-1": True}))
    directory.upsert(agent("agent-1", "acct-2", push_enabled={"site-1": True, "site-2": True}))

    assert agent_ids(directory.eligible_targets(site("site-1", "acct-1"))) == ["agent-2"]
    assert agent_ids(directory.eligible_targets(site("site-2", "acct-2"))) == ["agent-1"]


def test_a_removed_agent_is_pushed_no_more_and_its_account_forgets_it() -> None:
    directory = AgentDirectory()
    directory.upsert(agent("agent-1"))
    directory.upsert(agent("agent-2", "acct-2"))
    directory.remove("agent-1")
    directory.remove("agent-1")  # a second tombstone is harmless

    assert directory.eligible_targets(site()) == ()
    directory.upsert(agent("agent-1"))
    assert agent_ids(directory.eligible_targets(site())) == ["agent-1"]


def test_agents_with_equal_toggles_share_one_map_and_one_account_id() -> None:
    directory = AgentDirectory()
    # Equal but distinct objects, as every decoded snapshot brings its own.
    account = "acct-%d"
    first = agent("agent-1", account % 1, push_enabled={"site-1": True, "site-2": False})
    second = agent("agent-2", account % 1, push_enabled={"site-1": True, "site-2": False})
    other = agent("agent-3", "acct-1", push_enabled={"site-1": False, "site-2": True})
    for snapshot in (first, second, other):
        directory.upsert(snapshot)

    one, two, three = (directory.get(agent_id) for agent_id in ("agent-1", "agent-2", "agent-3"))
    assert one is not None and two is not None and three is not None
    assert one.push_enabled_by_site is two.push_enabled_by_site
    assert one.account_id is two.account_id
    assert three.push_enabled_by_site == {"site-1": False, "site-2": True}
    assert one == first  # sharing changes which objects, never what they say
    assert agent_ids(directory.eligible_targets(site("site-2"))) == ["agent-3"]


def test_past_the_shared_table_limit_agents_keep_toggles_of_their_own() -> None:
    directory = AgentDirectory()
    for i in range(MAX_SHARED_TOGGLES + 2):
        directory.upsert(agent(f"agent-{i}", push_enabled={"site-1": True, f"site-x{i}": True}))

    assert len(directory._toggles) == MAX_SHARED_TOGGLES  # the bound under test
    last = directory.get(f"agent-{MAX_SHARED_TOGGLES + 1}")
    assert last is not None and last.push_enabled_by_site == {
        "site-1": True,
        f"site-x{MAX_SHARED_TOGGLES + 1}": True,
    }
    assert len(directory.eligible_targets(site())) == MAX_SHARED_TOGGLES + 2


def test_dead_tokens_are_left_out_only_for_their_agent() -> None:
    directory = AgentDirectory()
    phones = (device("d1", token="t1"), device("d2", token="t2"))
    directory.upsert(agent("agent-1", devices=phones))
    directory.upsert(agent("agent-2", devices=phones))
    directory.mark_token_dead("agent-1", "d1", "t1")

    targets = directory.eligible_targets(site())
    assert [(t.agent_id, t.device.device_id) for t in targets] == [
        ("agent-1", "d2"),
        ("agent-2", "d1"),
        ("agent-2", "d2"),
    ]
