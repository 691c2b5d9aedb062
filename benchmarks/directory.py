"""Directory scale: one worker holding the whole agents and sites directory (issue #13).

The compacted agents and sites topics are filled with `agents` agents (two devices each: an
Android phone with a 163-character FCM registration token and an iPhone with a 64-hex APNs
token, the lengths the providers issue) spread evenly over `accounts` accounts, and `sites`
sites (the accounts' sites, evenly). Each agent has its account's sites with the push toggle on
for most of them (one in seven off, varying by agent). The fill is timed: batched producers, one
process per `FILL_PROCESSES`, each appending pre-built batches as fast as the broker takes them.

Measured on worker processes (`python -m service run`):
- start to ready: from spawning the process to its readiness probe passing, which waits for the
  directory to be read to the topics' end offsets (its only chat-events partition is empty);
- RSS for the directory: RSS of that worker once ready minus RSS of an identical worker whose
  directory topics are empty (both settled for `SETTLE_S`), per agent too.

And in a process of its own (`python -m benchmarks.directory lookup ...`), on snapshots decoded by
the worker's own decoder from the same records: the CPU cost of `AgentDirectory.eligible_targets`
(what a handoff's fan-out asks) for accounts of 10, 50 and 1,000 agents, in a directory of
`agents` agents and in one of 10,000: the cost must follow the account's size, not the directory's.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import timeit
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer

from benchmarks.rig import Workers, fresh_settings, rss_bytes
from service.domain.directory import AgentDirectory
from service.domain.events import SiteSnapshot
from service.wire.inbound import DecodeLimits, decode_agent
from service.wire.rejection import Rejection

SIZES = {"smoke": (5_000, 50, 150), "full": (1_000_000, 10_000, 30_000)}
"""Agents, accounts, sites by suite scale (#13: 1M agents x 2 devices, 10,000 accounts, 30,000 sites)."""
SETTLE_S = 2.0
FILL_PROCESSES = 2
LOOKUP_SIZES = (10, 50, 1_000)
SMALL_DIRECTORY = 10_000
FCM_TOKEN_CHARS = 163
_FCM_TAIL = "x" * (FCM_TOKEN_CHARS - 18)
SITES_PER_ACCOUNT = 3


def _site_id(number: int) -> str:
    return f"site-{number:06d}"


def agent_record(i: int, accounts: int, account: int | None = None) -> tuple[bytes, bytes]:
    """Key and value of agent `i` (of `account`, by default i % accounts), as the agent service
    would write it (CloudEvents JSON)."""
    acct = i % accounts if account is None else account
    agent_id = f"agent-{i:07d}"
    data = {
        "agent_id": agent_id,
        "account_id": f"acct-{acct:05d}",
        "live_chat_available": True,
        "sites": [
            {"site_id": _site_id(acct * SITES_PER_ACCOUNT + s), "push_enabled": (i + s) % 7 != 0}
            for s in range(SITES_PER_ACCOUNT)
        ],
        "devices": [
            {"device_id": f"{agent_id}-pixel", "provider": "fcm", "token": f"{i:011d}:APA91b{_FCM_TAIL}"},
            {"device_id": f"{agent_id}-iphone", "provider": "apns", "token": f"{i:064x}"},
        ],
    }
    return agent_id.encode(), _event(f"a-{i}", "livechat.agent.updated", data)


def site_record(number: int, accounts: int) -> tuple[bytes, bytes]:
    site_id = _site_id(number)
    data = {
        "site_id": site_id,
        "account_id": f"acct-{number // SITES_PER_ACCOUNT % accounts:05d}",
        "name": f"Site {number}",
        "time_to_accept_seconds": 120,
        "contact": {"email": "help@example.com", "phone": "+1 555 0100"},
    }
    return site_id.encode(), _event(f"s-{number}", "livechat.site.updated", data)


def _event(event_id: str, event_type: str, data: dict[str, Any]) -> bytes:
    envelope = {"specversion": "1.0", "id": event_id, "source": "urn:bench:directory", "type": event_type}
    return msgspec.json.encode(envelope | {"time": "2026-12-01T00:00:00Z", "data": data})


async def _produce(bootstrap: str, topic: str, kind: str, first: int, count: int, accounts: int) -> None:
    """Records first..first+count-1 of `kind` into partition 0 of `topic`, in full batches."""
    record = agent_record if kind == "agents" else site_record
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, max_batch_size=1_048_576, linger_ms=50)
    await producer.start()
    try:
        batch = producer.create_batch()
        pending: list[asyncio.Future[Any]] = []
        for i in range(first, first + count):
            key, value = record(i, accounts)
            if batch.append(key=key, value=value, timestamp=None) is None:
                pending.append(await producer.send_batch(batch, topic, partition=0))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
                if len(pending) >= 16:
                    await asyncio.gather(*pending)
                    pending.clear()
        if batch.record_count():
            pending.append(await producer.send_batch(batch, topic, partition=0))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def fill(bootstrap: str, topic: str, kind: str, count: int, accounts: int) -> float:
    """Write `count` records of `kind` with FILL_PROCESSES processes; seconds taken."""
    started = time.monotonic()
    share = -(-count // FILL_PROCESSES)
    processes = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "benchmarks.directory", "fill", bootstrap, topic, kind),
            *(str(first), str(min(share, count - first)), str(accounts)),
        )
        for first in range(0, count, share)
    ]
    codes = await asyncio.gather(*(process.wait() for process in processes))
    if any(codes):
        raise RuntimeError(f"a fill process exited with {codes}")
    return time.monotonic() - started


async def _settled_rss(workers: Workers) -> int:
    await asyncio.sleep(SETTLE_S)
    (worker,) = workers.fleet.workers.values()
    return rss_bytes(worker.process.pid)


async def _worker(settings: Any, log_dir: Path) -> tuple[float, int]:
    """Start to ready (s) and settled RSS of one worker with `settings`."""
    workers = Workers.for_settings(settings, log_dir)
    try:
        started = time.monotonic()
        await workers.start(1, timeout=600.0)
        ready_s = time.monotonic() - started
        return ready_s, await _settled_rss(workers)
    finally:
        await workers.stop()


async def lookup_costs(agents: int, accounts: int) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "benchmarks.directory", "lookup", str(agents), str(accounts)),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"lookup benchmark exited with {process.returncode}")
    result: dict[str, Any] = json.loads(out)
    return result


async def run(bootstrap: str, workdir: Path, scale: str) -> dict[str, Any]:
    agents, accounts, sites = SIZES[scale]
    empty = await fresh_settings(bootstrap, "dir-empty", 1)
    loaded = await fresh_settings(bootstrap, "dir-loaded", 1)
    fill_agents_s = await fill(bootstrap, loaded.topic_agents, "agents", agents, accounts)
    fill_sites_s = await fill(bootstrap, loaded.topic_sites, "sites", sites, accounts)
    logs = workdir / "logs"
    empty_ready_s, rss_empty = await _worker(empty, logs / "directory-empty")
    ready_s, rss_loaded = await _worker(loaded, logs / "directory-loaded")
    lookups = await lookup_costs(agents, accounts)
    grown = rss_loaded - rss_empty
    return {
        "agents": agents,
        "devices_per_agent": 2,
        "accounts": accounts,
        "sites": sites,
        "fill_agents_s": round(fill_agents_s, 2),
        "fill_agents_per_s": round(agents / fill_agents_s),
        "fill_sites_s": round(fill_sites_s, 2),
        "fill_processes": FILL_PROCESSES,
        "empty_start_to_ready_s": round(empty_ready_s, 2),
        "start_to_ready_s": round(ready_s, 2),
        "rss_empty_bytes": rss_empty,
        "rss_loaded_bytes": rss_loaded,
        "directory_rss_mb": round(grown / 1e6, 1),
        "directory_rss_bytes_per_agent": round(grown / agents, 1),
        "lookup": lookups,
    }


def _directory(agents: int, accounts: int) -> AgentDirectory:
    """`agents` agents over `accounts` accounts, plus one account per LOOKUP_SIZES size (numbers
    `accounts` + k) with that many agents, all decoded from their records as the worker does.
    The measured accounts' agents are spread evenly through the load, as an account's agents
    arrive between everyone else's (their objects then lie as far apart in memory)."""
    limits = DecodeLimits()
    directory = AgentDirectory()
    measured = [
        (account, number)
        for account, size in enumerate(LOOKUP_SIZES, start=accounts)
        for number in range(size)
    ]
    order = sorted(
        [(i, i) for i in range(agents)]
        + [(j * agents / len(measured), agents + j) for j in range(len(measured))]
    )
    records = (
        agent_record(i, accounts) if i < agents else agent_record(i, accounts, measured[i - agents][0])
        for _, i in order
    )
    for key, value in records:
        agent = decode_agent(key, value, limits)
        if isinstance(agent, Rejection):
            raise TypeError(f"a benchmark record was rejected: {agent}")
        directory.upsert(agent)
    return directory


def _per_call_us(directory: AgentDirectory, site: SiteSnapshot, size: int) -> tuple[float, int]:
    calls = max(20, 20_000 // size)
    best = min(timeit.repeat(lambda: directory.eligible_targets(site), number=calls, repeat=5))
    return best / calls * 1e6, len(directory.eligible_targets(site))


def lookup_main(agents: int, accounts: int) -> dict[str, Any]:
    result: dict[str, Any] = {"calls": "best of 5 x (20,000 / account size)"}
    for label, population in (("large", agents), ("small", min(agents, SMALL_DIRECTORY))):
        directory = _directory(population, max(1, population * accounts // agents))
        rows = {}
        base = max(1, population * accounts // agents)
        for k, size in enumerate(LOOKUP_SIZES):
            # The account's second site: one in seven of its agents has that toggle off.
            site = SiteSnapshot(
                _site_id((base + k) * SITES_PER_ACCOUNT + 1), f"acct-{base + k:05d}", "S", 120, None, None
            )
            micros, targets = _per_call_us(directory, site, size)
            rows[str(size)] = {"us_per_lookup": round(micros, 2), "targets": targets}
        result[label] = {"directory_agents": len(directory), "by_account_size": rows}
    return result


def main() -> None:
    match sys.argv[1:]:
        case ["fill", bootstrap, topic, kind, first, count, accounts]:
            asyncio.run(_produce(bootstrap, topic, kind, int(first), int(count), int(accounts)))
        case ["lookup", agents, accounts]:
            print(json.dumps(lookup_main(int(agents), int(accounts))))
        case _:
            raise SystemExit(
                "usage: python -m benchmarks.directory fill BOOTSTRAP TOPIC agents|sites FIRST COUNT ACCOUNTS"
                " | lookup AGENTS ACCOUNTS"
            )


if __name__ == "__main__":
    main()
