"""Load drivers and process measurements for the gateway benchmark.

- ``throughput``: wrk at full speed (non-streaming), with the CPU the target used per request;
- ``fixed_rate``: an open-loop asyncio driver at a moderate rate, for latency percentiles;
- ``streams``: many concurrent streaming requests, for streams/s and first-chunk delay;
- ``tree_cpu`` / ``tree_rss``: CPU seconds and resident memory of a process and its children.

All traffic goes to loopback; every run is bounded in time and count.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from stack import procs

BODY = '{"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello in three words."}]}'
STREAM_BODY = (
    '{"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true}, '
    '"messages": [{"role": "user", "content": "Count to twenty."}]}'
)


# --- processes ------------------------------------------------------------------------------

tree_cpu = procs.cpu_seconds
tree_rss = procs.rss_mib


def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)  # idle + iowait, total


def wait_quiet(*, idle: float = 0.85, timeout: float = 90.0) -> float:
    """Wait until the machine is mostly idle (the work a previous run left behind, such as
    metering a burst of usage events, is done); returns the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        idle0, total0 = _cpu_times()
        time.sleep(1.0)
        idle1, total1 = _cpu_times()
        if (idle1 - idle0) / max(total1 - total0, 1) >= idle:
            break
    return time.monotonic() - start


# --- drivers --------------------------------------------------------------------------------


@dataclass
class Throughput:
    rps: float
    requests: int
    cpu_ms_per_request: float


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
        found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is needed for the throughput run: apt-get install wrk")
    return found


def throughput(url: str, key: str, pid: int, *, seconds: int, connections: int) -> Throughput:
    script = f"""
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
    try:
        cpu0 = tree_cpu(pid)
        out = subprocess.run(
            [wrk_binary(), "-t1", f"-c{connections}", f"-d{seconds}s", "-s", fh.name, f"{url}/chat/completions"],
            check=True,
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        ).stdout
        cpu = tree_cpu(pid) - cpu0
    finally:
        os.unlink(fh.name)
    if "Non-2xx" in out:
        raise RuntimeError(f"errors during the throughput run:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return Throughput(rps=rps, requests=requests, cpu_ms_per_request=cpu * 1000 / max(requests, 1))


@dataclass
class Latency:
    p50_ms: float
    p99_ms: float
    samples: int


async def _fixed_rate(url: str, key: str, rate: float, seconds: float) -> Latency:
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:

        async def one() -> None:
            t0 = time.perf_counter()
            async with session.post(f"{url}/chat/completions", data=BODY, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}")
            latencies.append((time.perf_counter() - t0) * 1000)

        for _ in range(10):  # warm the connection pool
            await one()
        latencies.clear()
        tasks = []
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    q = statistics.quantiles(latencies, n=100)
    return Latency(p50_ms=statistics.median(latencies), p99_ms=q[98], samples=len(latencies))


def fixed_rate(url: str, key: str, *, rate: float, seconds: float) -> Latency:
    return asyncio.run(_fixed_rate(url, key, rate, seconds))


@dataclass
class Streams:
    per_second: float
    first_chunk_p50_ms: float
    completed: int
    cpu_ms_per_stream: float


async def _streams(
    url: str, key: str, concurrency: int, total: int, seconds: float, model: str
) -> tuple[int, float, list[float]]:
    data = STREAM_BODY.replace('"gpt-4o"', json.dumps(model))
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    first: list[float] = []
    done = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            nonlocal done
            while done < total and time.perf_counter() < deadline:
                t0 = time.perf_counter()
                async with session.post(f"{url}/chat/completions", data=data, headers=headers) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"HTTP {resp.status}")
                    got_first = False
                    body = b""
                    async for chunk in resp.content.iter_any():
                        if not got_first and b"tok0" in chunk:  # the first content chunk
                            first.append((time.perf_counter() - t0) * 1000)
                            got_first = True
                        body += chunk
                    if not body.endswith(b"data: [DONE]\n\n"):
                        raise RuntimeError("stream did not finish")
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return done, elapsed, first


def streams(
    url: str, key: str, pid: int, *, concurrency: int, total: int, seconds: float, model: str = "gpt-4o"
) -> Streams:
    cpu0 = tree_cpu(pid)
    done, elapsed, first = asyncio.run(_streams(url, key, concurrency, total, seconds, model))
    cpu = tree_cpu(pid) - cpu0
    return Streams(
        per_second=done / elapsed,
        first_chunk_p50_ms=statistics.median(first),
        completed=done,
        cpu_ms_per_stream=cpu * 1000 / max(done, 1),
    )
