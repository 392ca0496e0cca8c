"""``GATEWAY_EDGE_WORKERS`` edge workers under one parent: one that dies is started again,
SIGTERM is passed on to each, and the parent exits once all have drained.

Each worker is ``python -m services.edge`` with one worker (services/edge/server.py), started
as a plain child process: the parent imports neither the web stack nor the app, and needs no
multiprocessing helper process, so it stays small (some 30 MiB).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from services.edge.settings import EdgeSettings
from services.edge.sockets import listen
from shared.metrics import MULTIPROC_ENV
from shared.runner import die_with_parent

log = logging.getLogger("switchyard.edge")


class Workers:
    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._procs: list[subprocess.Popen[bytes]] = []

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
                code = proc.poll()
                if code is not None:
                    failures += 1
                    from prometheus_client import multiprocess

                    multiprocess.mark_process_dead(proc.pid)  # type: ignore[no-untyped-call]
                    log.warning("edge worker %s exited with %s; starting another", proc.pid, code)
                    if self._stop.wait(min(0.5 * 2 ** min(failures, 6), 30.0)):
                        break  # told to stop while backing off: start nothing more
                    self._procs[i] = self._spawn()
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.drain_seconds + 10
        code = 0
        for proc in self._procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.error("edge worker %s did not finish its drain; killing it", proc.pid)
                proc.kill()
                proc.wait()
            code = code or (1 if proc.returncode != 0 else 0)
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

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ, GATEWAY_EDGE_WORKERS="1")
        return subprocess.Popen([sys.executable, "-m", "services.edge"], env=env, preexec_fn=die_with_parent)
