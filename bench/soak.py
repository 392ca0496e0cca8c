"""The soak: a long mixed load through the whole stack, checked for leaks and lost usage.

``make bench`` runs it last, against the stack it measured (``python -m bench.run``):
100,000 requests by default, in a fixed mix (of every 20: 11 complete chat answers, 5 streams
read to the end, 2 upstream refusals, 1 stream the client drops after its first chunk, 1
request with a wrong key). After a warm-up (the first 30%) and at the end, with the load
stopped, every event stored and the machine quiet, it reads the resident memory and open file
descriptors of every process of the stack. The goals: each process's memory at the end within
10% of its size after the warm-up; no more file descriptors than after the warm-up beyond the
connections a keep-alive pool may hold (at most one per request in flight: a leak of one
descriptor in a thousand requests would show 70 more); exactly one stored usage event for
every request that had a valid key (none lost, none doubled).

The warm-up is long because the Go servers' heaps (NATS, OpenBao) take tens of thousands of
requests to reach their working size: with a warm-up of 10%, NATS measured 41 MiB after it
and 47 MiB at the end (1.16x). With 30% it measured 1.08x in one trial and 1.03x, 1.14x and
1.18x in the three make bench runs since. It is not a leak: three soaks in a row on one
stack left NATS at 39.9, 48.9 and 40.8 MiB, its streams empty; its RSS follows the Go heap's
cycle (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp
import httpx

from bench import driver
from bench.upstream import FAIL
from stack import procs
from stack.launcher import Stack

# Of every 20 requests (in this order, spread over the run): what each one is.
MIX = ["answer"] * 11 + ["stream"] * 5 + ["refused"] * 2 + ["dropped", "bad_key"]
_ANSWER = driver.BODY.encode()
_STREAM = driver.STREAM_BODY.encode()
_REFUSED = driver.BODY.replace("Say hello in three words.", FAIL.decode()).encode()


@dataclass
class Sample:
    rss_mib: dict[str, float]
    open_files: dict[str, int]


@dataclass
class Soak:
    requests: int
    seconds: float
    kinds: dict[str, int]
    unexpected: dict[str, int]  # "<kind> <status>" for answers other than the expected one
    warm: Sample
    end: Sample
    metered: int  # usage events stored for the soak's user
    expected: int  # requests with a valid key
    concurrency: int  # requests in flight at once: connections a pool may still hold at the end
    peak_rss_mib: dict[str, float] = field(default_factory=dict)  # sampled while the load ran

    @property
    def worst_rss_growth(self) -> tuple[str, float]:
        ratios = {name: self.end.rss_mib[name] / self.warm.rss_mib[name] for name in self.warm.rss_mib}
        name = max(ratios, key=lambda n: ratios[n])
        return name, ratios[name]

    @property
    def file_growth(self) -> int:
        return sum(self.end.open_files.values()) - sum(self.warm.open_files.values())


def _sample(pids: dict[str, int]) -> Sample:
    return Sample(
        {name: procs.rss_mib(pid) for name, pid in pids.items()},
        {name: procs.open_files(pid) for name, pid in pids.items()},
    )


async def _load(
    url: str, key: str, start: int, count: int, concurrency: int, kinds: dict[str, int], unexpected: dict[str, int]
) -> None:
    good = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    bad = {"authorization": "Bearer sk-sy-not-a-key", "content-type": "application/json"}
    expected = {"answer": 200, "stream": 200, "refused": 400, "dropped": 200, "bad_key": 401}
    queue = iter(range(start, start + count))

    async def one(session: aiohttp.ClientSession, kind: str) -> None:
        body = {"stream": _STREAM, "dropped": _STREAM, "refused": _REFUSED}.get(kind, _ANSWER)
        headers = bad if kind == "bad_key" else good
        kinds[kind] = kinds.get(kind, 0) + 1
        try:
            async with session.post(f"{url}/chat/completions", data=body, headers=headers) as resp:
                if kind == "dropped":
                    await resp.content.readany()  # the first chunk, then the client goes away
                    resp.close()
                else:
                    await resp.read()
                status = str(resp.status)
        except aiohttp.ClientError as exc:
            status = type(exc).__name__
        if status != str(expected[kind]):
            label = f"{kind} {status}"
            unexpected[label] = unexpected.get(label, 0) + 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            for i in queue:
                await one(session, MIX[i % len(MIX)])

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def _settle(origin: str, admin_key: str, user: str, expected: int, timeout: float = 300) -> int:
    """Wait until metering has nothing pending and holds ``expected`` events of ``user`` (or
    the timeout passes); returns what it holds."""
    headers = {"authorization": f"Bearer {admin_key}"}
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=30, headers=headers) as client:
        while True:
            pending = int(client.get(f"{origin}/ai/usage/status").json()["pending"])
            summary = client.get(f"{origin}/ai/usage/summary", params={"user": user, "period": "24h"}).json()
            held = int(summary["total_requests"])
            if (pending == 0 and held >= expected) or time.monotonic() > deadline:
                return held
            time.sleep(0.5)


def soak(stack: Stack, url: str, admin_key: str, *, total: int, concurrency: int, warm_up: float = 0.3) -> Soak:
    origin = url.removesuffix("/v1")
    user = f"soak-{int(time.time())}"
    resp = httpx.post(
        f"{origin}/ai/keys",
        headers={"authorization": f"Bearer {admin_key}"},
        json={"user": user, "name": "soak"},
        timeout=30,
    )
    resp.raise_for_status()
    key = str(resp.json()["key"])
    pids = {name: pid for name in stack.supervisor.children if (pid := stack.supervisor.pid(name))}
    kinds: dict[str, int] = {}
    unexpected: dict[str, int] = {}
    warm_count = int(total * warm_up)

    def expected_so_far() -> int:
        return sum(n for kind, n in kinds.items() if kind != "bad_key")

    print(f"  soak: warm-up, {warm_count:,} requests ...", flush=True)
    asyncio.run(_load(url, key, 0, warm_count, concurrency, kinds, unexpected))
    _settle(origin, admin_key, user, expected_so_far())
    driver.wait_quiet()
    warm = _sample(pids)

    print(f"  soak: {total - warm_count:,} requests more ...", flush=True)
    peak = dict(warm.rss_mib)
    started = time.monotonic()

    async def load_and_watch() -> None:
        load = asyncio.create_task(_load(url, key, warm_count, total - warm_count, concurrency, kinds, unexpected))
        while not load.done():
            await asyncio.wait([load], timeout=5)
            for name, pid in pids.items():
                peak[name] = max(peak[name], procs.rss_mib(pid))
        await load

    asyncio.run(load_and_watch())
    seconds = time.monotonic() - started
    expected = expected_so_far()
    metered = _settle(origin, admin_key, user, expected)
    driver.wait_quiet()
    end = _sample(pids)
    return Soak(
        requests=sum(kinds.values()),
        seconds=seconds,
        kinds=kinds,
        unexpected=unexpected,
        warm=warm,
        end=end,
        metered=metered,
        expected=expected,
        concurrency=concurrency,
        peak_rss_mib=peak,
    )
