"""The edge's processes: uvicorn workers, each on its own ``SO_REUSEPORT`` socket, that drain
on SIGTERM.

Each worker listens on a socket of its own (the kernel spreads connections over them), so a
worker that stops listening is out of the rotation at once: a connection attempt is refused,
and a load balancer moves on, instead of waiting in a backlog nobody accepts from (which a
socket shared with a parent process that outlives its workers would do).

On SIGTERM a worker drains: ``/readyz`` turns 503, the listener closes, requests and streams
in flight finish (up to ``GATEWAY_DRAIN_SECONDS``), then the app's shutdown flushes usage
events, and the process exits 0.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import uvicorn

from services.edge.settings import EdgeSettings
from shared import logs
from shared.metrics import MULTIPROC_ENV

log = logging.getLogger("switchyard.edge")

_PR_SET_PDEATHSIG = 1


@dataclass
class Drain:
    """Set once a drain starts; the app's ``/readyz`` reads it."""

    started: bool = False


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.drain.started:
            log.info("draining: finishing requests in flight, taking no new ones")
        self.drain.started = True
        super().handle_exit(sig, frame)


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: EdgeSettings) -> None:
    """One worker, in this process, until SIGTERM/SIGINT and its drain are done."""
    from services.edge.app import create_app  # each worker builds its app (and its state) itself

    drain = Drain()
    config = uvicorn.Config(
        create_app(settings, drain),
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=max(int(settings.drain_seconds), 1),
        loop="uvloop",
        http="httptools",
        log_config=None,
    )
    server = DrainingServer(config, drain)
    # uvicorn re-raises the stop signal once it has shut down; after a clean drain that
    # must not turn into death by signal: the exit code is 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    server.run(sockets=[listen(settings.host, settings.port)])
    if not server.started:
        sys.exit(3)  # it never served (the app failed to start)


def _die_with_parent() -> None:
    """A worker whose parent was killed outright stops too (Linux), and frees the port."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def _worker() -> None:
    _die_with_parent()
    settings = EdgeSettings()
    logs.configure("edge", settings.log_level, settings.log_format)
    serve(settings)


class Workers:
    """``GATEWAY_EDGE_WORKERS`` worker processes; one that dies is started again. SIGTERM is
    passed on to each, and the parent exits once all have drained."""

    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self._ctx = multiprocessing.get_context("spawn")
        self._stop = threading.Event()
        self._procs: list[multiprocessing.process.BaseProcess] = []

    def run(self) -> int:
        if self.settings.port == 0:  # every worker must bind the same port: choose it once
            with listen(self.settings.host, 0) as probe:
                os.environ["GATEWAY_PORT"] = str(probe.getsockname()[1])
        self._metrics_dir()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        self._procs = [self._spawn() for _ in range(self.settings.workers)]
        failures = 0
        while not self._stop.wait(0.5):
            for i, proc in enumerate(self._procs):
                if proc.exitcode is not None:
                    failures += 1
                    if proc.pid is not None:
                        from prometheus_client import multiprocess

                        multiprocess.mark_process_dead(proc.pid)  # type: ignore[no-untyped-call]
                    log.warning("edge worker %s exited with %s; starting another", proc.pid, proc.exitcode)
                    if self._stop.wait(min(0.5 * 2 ** min(failures, 6), 30.0)):
                        break  # told to stop while backing off: start nothing more
                    self._procs[i] = self._spawn()
        for proc in self._procs:
            if proc.exitcode is None and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.drain_seconds + 10
        code = 0
        for proc in self._procs:
            proc.join(max(deadline - time.monotonic(), 0.1))
            if proc.exitcode is None:
                log.error("edge worker %s did not finish its drain; killing it", proc.pid)
                proc.kill()
                proc.join()
            code = code or (1 if proc.exitcode != 0 else 0)
        return code

    def _metrics_dir(self) -> None:
        """Where the workers write their metrics, so that any of them can answer /metrics for
        all (shared/metrics.py): emptied at start, as the samples of an earlier run are stale."""
        folder = os.environ.get(MULTIPROC_ENV)
        if folder:
            path = Path(folder)
        else:
            path = self.settings.data_dir / "metrics" / f"edge-{os.environ.get('GATEWAY_PORT', self.settings.port)}"
            os.environ[MULTIPROC_ENV] = str(path.resolve())
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)

    def _spawn(self) -> multiprocessing.process.BaseProcess:
        proc = self._ctx.Process(target=_worker, name="edge-worker")
        proc.start()
        return proc
