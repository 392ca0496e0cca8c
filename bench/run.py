"""The side-by-side gateway benchmark: direct, the pass-through reference and Switchyard,
measured in one run on this machine, printed as a table of ratios.

    make bench            (or: python -m bench.run [--seconds 10])

Switchyard runs as `make up` runs it (NATS, OpenBao, router, keyvault, metering, one edge
worker), with every hot-path feature on: client-key check, routing, provider key from the
cache, usage event publish. The upstream is a fake OpenAI server (bench/upstream.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import driver
from bench.soak import Soak, soak
from stack.launcher import Stack
from stack.ports import free_port, wait_port
from stack.settings import StackSettings

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class WholeStack:
    """One throughput run counted over every process ``make up`` starts, until metering has
    stored every event it caused: CPU milliseconds per request by process, and how long the
    events took to be stored once the load ended."""

    requests: int
    cpu_ms: dict[str, float]
    settled_s: float

    @property
    def total_ms(self) -> float:
        return sum(self.cpu_ms.values())


@dataclass
class Result:
    name: str
    rss_mib: float
    throughput: driver.Throughput
    latency: driver.Latency
    streams: driver.Streams
    after_burst: driver.Latency  # at the fixed rate right after the throughput run, no wait


def _spawn(module: str, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)


def _warm(url: str, key: str) -> None:
    with httpx.Client(timeout=10) as client:
        for _ in range(50):
            resp = client.post(
                f"{url}/chat/completions",
                content=driver.BODY,
                headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
            )
            resp.raise_for_status()


def _limited_key(url: str, admin_key: str) -> str:
    """A client key with every limit and a budget set, none of them reached by the benchmark:
    each request goes through admission, leases and settlement (docs/limits.md)."""
    limits = {"rpm": 10**8, "tpm": 10**11, "max_parallel": 10**5, "budget_usd": 10**6, "budget_period": "total"}
    resp = httpx.post(
        url.removesuffix("/v1") + "/ai/keys",
        headers={"authorization": f"Bearer {admin_key}"},
        json={"user": "bench-limits", "name": "bench", **limits},
        timeout=30,
    )
    resp.raise_for_status()
    return str(resp.json()["key"])


def measure(name: str, url: str, key: str, pid: int, args: argparse.Namespace) -> Result:
    _warm(url, key)
    # Each target starts on a quiet machine: the one before may have left work behind (metering
    # the usage of its burst), and two runs share the Switchyard edge.
    driver.wait_quiet()
    rss = driver.tree_rss(pid)
    print(f"  {name}: throughput ...", flush=True)
    tp = driver.throughput(url, key, pid, seconds=args.seconds, connections=args.connections)
    print(f"  {name}: latency at {args.rate:g} req/s right after the burst ...", flush=True)
    burst = driver.fixed_rate(url, key, rate=args.rate, seconds=args.burst_seconds)
    waited = driver.wait_quiet()
    print(f"  {name}: machine quiet again after {waited:.0f}s", flush=True)
    print(f"  {name}: latency at {args.rate:g} req/s ...", flush=True)
    lat = driver.fixed_rate(url, key, rate=args.rate, seconds=args.latency_seconds)
    print(f"  {name}: {args.concurrency} concurrent streams ...", flush=True)
    st = driver.streams(url, key, pid, concurrency=args.concurrency, total=args.streams, seconds=args.seconds * 2)
    return Result(name, rss, tp, lat, st, burst)


def _stored(origin: str, admin_key: str) -> tuple[int, int]:
    """(events metering stored since it started, events waiting in JetStream)."""
    resp = httpx.get(f"{origin}/ai/usage/status", headers={"authorization": f"Bearer {admin_key}"}, timeout=30)
    resp.raise_for_status()
    status = resp.json()
    return int(status["inserted"]), int(status["pending"])


def _until_stored(origin: str, admin_key: str, target: int, timeout: float = 300) -> float:
    """Seconds until metering reports ``target`` events stored since it started and none
    pending (polled; the load has ended)."""
    ended = time.monotonic()
    while True:
        stored, pending = _stored(origin, admin_key)
        if stored >= target and pending == 0:
            return time.monotonic() - ended
        if time.monotonic() - ended > timeout:
            raise RuntimeError(f"metering stored {stored} of {target} events in {timeout:g} s")
        time.sleep(0.1)


def whole_stack(stack: Stack, url: str, key: str, admin_key: str, args: argparse.Namespace) -> WholeStack:
    """The throughput run again, its cost counted over every process of the stack (edge, NATS,
    metering, router, keyvault, OpenBao) from the load's start until metering has stored every
    event (the count metering reports reaches what it was plus the requests, nothing pending)."""
    origin = url.removesuffix("/v1")
    driver.wait_quiet()
    names = list(stack.supervisor.children)
    pids = {name: stack.supervisor.pid(name) for name in names}
    before = {name: driver.tree_cpu(pid) for name, pid in pids.items() if pid is not None}
    stored0, _ = _stored(origin, admin_key)
    print("  switchyard: throughput, the whole stack until every event is stored ...", flush=True)
    tp = driver.throughput(url, key, pids["edge"] or 0, seconds=args.seconds, connections=args.connections)
    settled = _until_stored(origin, admin_key, stored0 + tp.requests)
    cpu = {name: (driver.tree_cpu(pid) - before[name]) * 1000 / tp.requests for name, pid in pids.items() if pid}
    return WholeStack(tp.requests, cpu, settled)


@dataclass
class Footprint:
    """``make up`` with its defaults on this machine: seconds until the API answers, and the
    resident memory of every process once idle."""

    ready_s: float
    rss_mib: dict[str, float]

    @property
    def total_mib(self) -> float:
        return sum(self.rss_mib.values())


@dataclass
class MultiCore:
    """The throughput run against ``make up``'s defaults (two edge workers here), against one
    worker's; and what this machine allows at best, as the load generator and the upstream
    share its cores with the stack."""

    workers: int
    rps: float
    one_worker_rps: float
    settled_s: float  # from the load's end until metering had stored every event, none pending
    cpu_ms_per_request: float  # every process: the stack, the upstream and the load generator

    @property
    def ratio(self) -> float:
        return self.rps / self.one_worker_rps

    @property
    def ceiling(self) -> float:
        """The ratio if every core were busy: cores / CPU per request, against one worker."""
        cores = os.cpu_count() or 1
        return cores * 1000 / self.cpu_ms_per_request / self.one_worker_rps


def footprint(
    environ: dict[str, str], data_dir: Path, upstream_pid: int, one_worker: driver.Throughput, args: argparse.Namespace
) -> tuple[Footprint, MultiCore]:
    print("a stack with make up's defaults: time to ready, idle memory, throughput ...", flush=True)
    driver.wait_quiet()
    started = time.monotonic()
    stack = Stack(StackSettings(GATEWAY_DATA_DIR=data_dir, GATEWAY_PORT=0), environ=environ)
    try:
        info = stack.start()
        resp = httpx.get(f"{info.base_url}/models", headers={"authorization": f"Bearer {info.admin_key}"}, timeout=30)
        resp.raise_for_status()  # what the README's first curl does
        ready = time.monotonic() - started
        time.sleep(15)  # idle: what start-up left behind is done
        rss = {name: driver.tree_rss(pid) for name in stack.supervisor.children if (pid := stack.supervisor.pid(name))}

        _warm(info.base_url, info.admin_key)
        driver.wait_quiet()
        origin = info.base_url.removesuffix("/v1")
        pids = [pid for name in stack.supervisor.children if (pid := stack.supervisor.pid(name))] + [upstream_pid]
        cpu0, load0 = sum(driver.tree_cpu(pid) for pid in pids), _children_cpu()
        stored0, _ = _stored(origin, info.admin_key)
        edge = stack.supervisor.pid("edge") or 0
        tp = driver.throughput(info.base_url, info.admin_key, edge, seconds=args.seconds, connections=args.connections)
        cpu = sum(driver.tree_cpu(pid) for pid in pids) - cpu0 + _children_cpu() - load0
        settled = _until_stored(origin, info.admin_key, stored0 + tp.requests)
        multi = MultiCore(stack.settings.edge_workers, tp.rps, one_worker.rps, settled, cpu * 1000 / tp.requests)
        return Footprint(ready, rss), multi
    finally:
        stack.stop()


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (the load generator, once it is done)."""
    times = os.times()
    return times.children_user + times.children_system


def table(
    results: dict[str, Result],
    translated: dict[str, driver.Streams],
    stack_cost: WholeStack,
    laptop: Footprint,
    multi: MultiCore,
    soaked: Soak | None,
) -> str:
    d, p, s = results["direct"], results["pass-through"], results["switchyard"]
    rows = [
        "| target | req/s, 1 worker | CPU per request | added p50 / p99 at fixed rate "
        "| the same right after a burst "
        "| streams/s at 50 concurrent (vs direct) | first chunk p50 | CPU per stream | idle RSS |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    limited = results["switchyard, limits on"]
    for r in (d, p, s, limited):
        added = (
            "-"
            if r is d
            else f"+{r.latency.p50_ms - d.latency.p50_ms:.2f} / +{r.latency.p99_ms - d.latency.p99_ms:.2f} ms"
        )
        burst = (
            "-"
            if r is d
            else f"+{r.after_burst.p50_ms - d.after_burst.p50_ms:.2f} / "
            f"+{r.after_burst.p99_ms - d.after_burst.p99_ms:.2f} ms"
        )
        rows.append(
            f"| {r.name} | {r.throughput.rps:,.0f} | {r.throughput.cpu_ms_per_request:.2f} ms | {added} | {burst} | "
            f"{r.streams.per_second:,.1f} ({r.streams.per_second / d.streams.per_second:.2f}x) | "
            f"{r.streams.first_chunk_p50_ms:.1f} ms | {r.streams.cpu_ms_per_stream:.2f} ms | {r.rss_mib:.0f} MiB |"
        )

    def added(r: Result, q: str) -> float:
        return max(getattr(r.latency, q) - getattr(d.latency, q), 0.01)

    def added_after_burst(r: Result, q: str) -> float:
        return max(getattr(r.after_burst, q) - getattr(d.after_burst, q), 0.01)

    goals = [
        ("throughput per edge worker vs pass-through", s.throughput.rps / p.throughput.rps, ">=", 0.6),
        ("added latency p50 vs pass-through", added(s, "p50_ms") / added(p, "p50_ms"), "<=", 1.5),
        ("added latency p99 vs pass-through", added(s, "p99_ms") / added(p, "p99_ms"), "<=", 1.5),
        (
            "added latency p50 right after a burst vs pass-through",
            added_after_burst(s, "p50_ms") / added_after_burst(p, "p50_ms"),
            "<=",
            1.5,
        ),
        (
            "added latency p99 right after a burst vs pass-through",
            added_after_burst(s, "p99_ms") / added_after_burst(p, "p99_ms"),
            "<=",
            1.5,
        ),
        ("streams/s at 50 concurrent vs direct", s.streams.per_second / d.streams.per_second, ">=", 0.9),
        ("first-chunk delay vs pass-through", s.streams.first_chunk_p50_ms / p.streams.first_chunk_p50_ms, "<=", 1.5),
        ("idle RSS per edge worker vs pass-through", s.rss_mib / p.rss_mib, "<=", 1.5),
        (
            "throughput with limits and a budget on vs pass-through",
            limited.throughput.rps / p.throughput.rps,
            ">=",
            0.6,
        ),
        ("added latency p50 with limits on vs pass-through", added(limited, "p50_ms") / added(p, "p50_ms"), "<=", 1.5),
        (
            "streams/s with limits on vs direct",
            limited.streams.per_second / d.streams.per_second,
            ">=",
            0.9,
        ),
        (
            "CPU per request vs pass-through (information)",
            s.throughput.cpu_ms_per_request / p.throughput.cpu_ms_per_request,
            "",
            0,
        ),
    ]
    goals.insert(
        0,
        (
            "whole-stack CPU per request (every process, until stored) vs pass-through",
            stack_cost.total_ms / p.throughput.cpu_ms_per_request,
            "<=",
            1.5,
        ),
    )
    metering = stack_cost.cpu_ms.get("metering", 0.0) + stack_cost.cpu_ms.get("metering-2", 0.0)
    rows += [
        "",
        f"Whole stack, {stack_cost.requests:,} requests, every event stored {stack_cost.settled_s:.1f} s after the "
        "load ended; CPU per request: "
        + ", ".join(f"{name} {ms:.3f} ms" for name, ms in sorted(stack_cost.cpu_ms.items(), key=lambda x: -x[1]))
        + f"; total {stack_cost.total_ms:.3f} ms (pass-through {p.throughput.cpu_ms_per_request:.3f} ms).",
        "",
        f"make up's defaults: the API answered {laptop.ready_s:.1f} s after the start; idle memory "
        + ", ".join(f"{name} {mib:.0f} MiB" for name, mib in sorted(laptop.rss_mib.items(), key=lambda x: -x[1]))
        + f"; total {laptop.total_mib:.0f} MiB.",
    ]
    rows += [
        "",
        f"Multi-core: make up's defaults ({multi.workers} edge workers) served {multi.rps:,.0f} req/s against one "
        f"worker's {multi.one_worker_rps:,.0f}; every process of the machine (the stack, the upstream and the load "
        f"generator) spent {multi.cpu_ms_per_request:.3f} ms of CPU a request, so {os.cpu_count()} cores allow "
        f"{multi.ceiling:.2f}x at best here.",
    ]
    if soaked is not None:
        rows += ["", _soak_summary(soaked)]
    rows += ["", "| goal | ratio | target | met |", "| --- | --- | --- | --- |"]
    for label, ratio, op, target in goals:
        met = "" if not op else ("yes" if (ratio >= target if op == ">=" else ratio <= target) else "**no**")
        rows.append(f"| {label} | {ratio:.2f}x | {op + ' ' + str(target) + 'x' if op else '-'} | {met} |")
    met = "yes" if metering <= 0.1 else "**no**"
    rows.append(f"| metering CPU per event, both meterings (absolute) | {metering:.3f} ms | <= 0.1 ms | {met} |")
    met = "yes" if laptop.total_mib <= 450 else "**no**"
    rows.append(f"| make up idle memory, every process (absolute) | {laptop.total_mib:.0f} MiB | <= 450 MiB | {met} |")
    met = "yes" if multi.ratio >= 1.6 else "**no**"
    rows.append(
        f"| throughput with make up's {multi.workers} edge workers vs one worker's | {multi.ratio:.2f}x | >= 1.6x "
        f"| {met} (this machine's ceiling: {multi.ceiling:.2f}x) |"
    )
    met = "yes" if multi.settled_s <= 5 else "**no**"
    rows.append(
        f"| ... every event stored, none pending, after the load ended (absolute) | {multi.settled_s:.1f} s | <= 5 s "
        f"| {met} |"
    )
    met = "yes" if laptop.ready_s <= 5 else "**no**"
    rows.append(f"| make up until the API answers (absolute) | {laptop.ready_s:.1f} s | <= 5 s | {met} |")
    if soaked is not None:
        rows += _soak_rows(soaked)
    for provider, t in translated.items():
        ratio = t.cpu_ms_per_stream / s.streams.cpu_ms_per_stream
        rows.append(
            f"| translated ({provider}) stream CPU per chunk vs Switchyard's OpenAI pass-through stream | "
            f"{ratio:.2f}x | <= 1.3x | {'yes' if ratio <= 1.3 else '**no**'} |"
        )
    for provider, t in translated.items():
        reference = t.cpu_ms_per_stream / p.streams.cpu_ms_per_stream
        rows.append(
            f"| translated ({provider}) stream: {t.per_second:,.1f} streams/s, {t.cpu_ms_per_stream:.2f} ms CPU per "
            f"stream ({reference:.2f}x the pass-through reference's), first chunk p50 {t.first_chunk_p50_ms:.1f} ms "
            "| - | - | - |"
        )
    return "\n".join(rows)


def _soak_rows(soaked: Soak) -> list[str]:
    name, growth = soaked.worst_rss_growth
    lost = soaked.expected - soaked.metered
    return [
        f"| soak: memory at the end vs after the warm-up, the process that grew most ({name}) | {growth:.2f}x "
        f"| <= 1.1x | {'yes' if growth <= 1.1 else '**no**'} |",
        f"| soak: more open file descriptors at the end than after the warm-up (absolute) | "
        f"{soaked.file_growth:+d} | <= {soaked.concurrency} (pooled connections) "
        f"| {'yes' if soaked.file_growth <= soaked.concurrency else '**no**'} |",
        f"| soak: usage events lost (negative: doubled) of {soaked.expected:,} (absolute) | {lost} | 0 "
        f"| {'yes' if lost == 0 else '**no**'} |",
        f"| soak: answers other than the one expected (absolute) | {sum(soaked.unexpected.values())} | 0 "
        f"| {'yes' if not soaked.unexpected else '**no**'} |",
    ]


def _soak_summary(soaked: Soak) -> str:
    def by_process(values: dict[str, float]) -> str:
        return ", ".join(f"{name} {v:.0f}" for name, v in sorted(values.items()))

    kinds = ", ".join(f"{kind} {n:,}" for kind, n in sorted(soaked.kinds.items()))
    unexpected = ", ".join(f"{k} x{n}" for k, n in sorted(soaked.unexpected.items())) or "none"
    return (
        f"Soak: {soaked.requests:,} requests ({kinds}) in {soaked.seconds:.0f} s after the warm-up; "
        f"{soaked.metered:,} usage events stored of {soaked.expected:,}; answers not as expected: {unexpected}. "
        f"Memory (MiB) after the warm-up: {by_process(soaked.warm.rss_mib)}; highest while loaded: "
        f"{by_process(soaked.peak_rss_mib)}; at the end: {by_process(soaked.end.rss_mib)}. Open files after "
        f"the warm-up: {sum(soaked.warm.open_files.values())}, at the end: {sum(soaked.end.open_files.values())}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="length of each throughput and latency run")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--rate", type=float, default=20.0, help="fixed request rate for the latency run")
    parser.add_argument("--latency-seconds", type=int, default=30, help="length of the fixed-rate run (600 samples)")
    parser.add_argument(
        "--burst-seconds", type=int, default=15, help="length of the fixed-rate run right after the throughput run"
    )
    parser.add_argument("--concurrency", type=int, default=50, help="concurrent streams")
    parser.add_argument("--streams", type=int, default=2000, help="streams per target, at most")
    parser.add_argument("--soak", type=int, default=100_000, help="requests in the soak run (0: no soak)")
    args = parser.parse_args()
    driver.wrk_binary()

    procs: list[subprocess.Popen[bytes]] = []
    stack: Stack | None = None
    results: dict[str, Result] = {}
    translated: dict[str, driver.Streams] = {}
    with tempfile.TemporaryDirectory(prefix="switchyard-bench-") as tmp:
        try:
            up_port, pt_port = free_port(), free_port()
            upstream = _spawn("bench.upstream", "--port", str(up_port))
            procs.append(upstream)
            assert wait_port("127.0.0.1", up_port, 20)
            upstream_url = f"http://127.0.0.1:{up_port}/v1"
            passthrough = _spawn("bench.passthrough", "--port", str(pt_port), "--upstream", upstream_url)
            procs.append(passthrough)
            assert wait_port("127.0.0.1", pt_port, 20)

            print("starting Switchyard (one edge worker) ...", flush=True)
            environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
            environ.update(
                OPENAI_BASE_URL=upstream_url,
                OPENAI_API_KEY="sk-bench-provider",
                ANTHROPIC_BASE_URL=f"http://127.0.0.1:{up_port}",
                ANTHROPIC_API_KEY="sk-bench-provider",
                GEMINI_BASE_URL=f"http://127.0.0.1:{up_port}",
                GEMINI_API_KEY="sk-bench-provider",
                GATEWAY_LOG_LEVEL="WARNING",
            )
            settings = StackSettings(
                GATEWAY_DATA_DIR=Path(tmp) / "data", GATEWAY_PORT=0, GATEWAY_EDGE_WORKERS=1, GATEWAY_LOG_LEVEL="WARNING"
            )
            stack = Stack(settings, environ=environ)
            info = stack.start()
            edge_pid = stack.supervisor.pid("edge")
            assert edge_pid is not None
            # Two meterings, as production runs them: on the embedded engine the second is the
            # standby (services/metering/standby.py); the whole-stack row counts both.
            stack.add_replica("metering", "metering-2", {})

            print("measuring ...", flush=True)
            results["direct"] = measure("direct", upstream_url, "none", upstream.pid, args)
            results["pass-through"] = measure(
                "pass-through", f"http://127.0.0.1:{pt_port}/v1", "none", passthrough.pid, args
            )
            results["switchyard"] = measure("switchyard", info.base_url, info.admin_key, edge_pid, args)
            limited = _limited_key(info.base_url, info.admin_key)
            results["switchyard, limits on"] = measure("switchyard, limits on", info.base_url, limited, edge_pid, args)
            stack_cost = whole_stack(stack, info.base_url, info.admin_key, info.admin_key, args)
            for provider, model in (("Anthropic", "claude-bench"), ("Gemini", "gemini-bench")):
                driver.wait_quiet()
                print(f"  switchyard: {args.concurrency} concurrent translated ({provider}) streams ...", flush=True)
                translated[provider] = driver.streams(
                    info.base_url, info.admin_key, edge_pid, concurrency=args.concurrency, total=args.streams,
                    seconds=args.seconds * 2, model=model,
                )  # fmt: skip
            soaked = None
            if args.soak:
                driver.wait_quiet()
                print(f"  switchyard: the soak, {args.soak:,} mixed requests ...", flush=True)
                soaked = soak(stack, info.base_url, info.admin_key, total=args.soak, concurrency=args.concurrency)
            stack.stop()
            stack = None
            one_worker = results["switchyard"].throughput
            laptop, multi = footprint(environ, Path(tmp) / "laptop", upstream.pid, one_worker, args)
        finally:
            if stack is not None:
                stack.stop()
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=10)
    out = table(results, translated, stack_cost, laptop, multi, soaked)
    print("\n" + out)
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / "latest.md").write_text(out + "\n")


if __name__ == "__main__":
    main()
