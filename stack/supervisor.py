"""Child processes started, watched and restarted with backoff; stopped without orphans.

Each child gets ``PR_SET_PDEATHSIG`` (Linux), so even a launcher killed with SIGKILL takes
its children with it. Output goes to one log file per child under the data dir.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("switchyard.stack")

_PR_SET_PDEATHSIG = 1
# Looked up once in the parent: the child, between fork and exec, only calls it.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
    os.setpgrp()  # its own group: Ctrl-C reaches the launcher, which stops children in order


def _preexec(nice: int) -> Callable[[], None]:
    def run() -> None:
        _die_with_parent()
        if nice:
            os.nice(nice)

    return run


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_file: Path
    # Called (in the monitor thread) after every start, e.g. to unseal Vault; raising is logged.
    after_start: Callable[[], None] | None = None
    stop_timeout: float = 15.0
    # Scheduling priority (os.nice increment): background services yield the CPU to the edge.
    nice: int = 0


@dataclass
class Child:
    spec: ChildSpec
    proc: subprocess.Popen[bytes] | None = None
    wanted: bool = False
    restarts: int = 0
    started_at: float = 0.0
    next_start: float = 0.0
    failures: int = 0
    history: list[int] = field(default_factory=list)


class Supervisor:
    def __init__(self, poll_interval: float = 0.2) -> None:
        self.children: dict[str, Child] = {}
        self._lock = threading.RLock()
        self._poll = poll_interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._monitor, name="supervisor", daemon=True)
        self._thread.start()

    def add(self, spec: ChildSpec) -> None:
        with self._lock:
            self.children[spec.name] = Child(spec)

    def start(self, name: str) -> int:
        with self._lock:
            child = self.children[name]
            child.wanted = True
            spawned = child.proc is None or child.proc.poll() is not None
            if spawned:
                child.next_start = 0.0
                self._spawn(child)
            assert child.proc is not None
            pid = child.proc.pid
        if spawned:
            self._after_start(child)
        return pid

    def pid(self, name: str) -> int | None:
        with self._lock:
            proc = self.children[name].proc
            return proc.pid if proc is not None and proc.poll() is None else None

    def _spawn(self, child: Child) -> None:
        spec = child.spec
        spec.log_file.parent.mkdir(parents=True, exist_ok=True)
        with spec.log_file.open("ab") as out:
            child.proc = subprocess.Popen(
                spec.argv,
                env=spec.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_preexec(spec.nice),
                close_fds=True,
            )
        child.started_at = time.monotonic()
        log.info("started %s (pid %d)", spec.name, child.proc.pid)

    def _after_start(self, child: Child) -> None:
        """The child's post-start step, run outside the lock (it may wait on the child)."""
        if child.spec.after_start is None:
            return
        try:
            child.spec.after_start()
        except Exception as exc:
            log.error("%s: post-start step failed: %s", child.spec.name, exc)

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM) -> int | None:
        """Stop one child on purpose (it is not restarted). Returns its exit code."""
        with self._lock:
            child = self.children[name]
            child.wanted = False
            proc = child.proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        proc.send_signal(sig)
        try:
            return proc.wait(timeout=child.spec.stop_timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0fs; killing it", name, child.spec.stop_timeout)
            proc.kill()
            return proc.wait()

    def stop_all(self) -> None:
        self._stopping.set()
        for name in reversed(list(self.children)):
            self.stop(name)
        self._thread.join(timeout=2)

    def _monitor(self) -> None:
        while not self._stopping.is_set():
            time.sleep(self._poll)
            with self._lock:
                restarted = [c for c in list(self.children.values()) if self._check(c)]
            for child in restarted:
                self._after_start(child)

    def _check(self, child: Child) -> bool:
        """Notice a child that died and restart it once its backoff has passed."""
        if not child.wanted or child.proc is None or self._stopping.is_set():
            return False
        code = child.proc.poll()
        if code is None:
            if time.monotonic() - child.started_at > 30:
                child.failures = 0  # it stayed up: the next crash starts the backoff again
            return False
        now = time.monotonic()
        if child.next_start == 0.0:
            delay = min(0.5 * 2**child.failures, 30.0)
            child.failures += 1
            child.next_start = now + delay
            child.history.append(code)
            log.warning(
                "%s exited with code %s; restarting in %.1fs (restart #%d)",
                child.spec.name,
                code,
                delay,
                child.restarts + 1,
            )
            return False
        if now >= child.next_start:
            child.next_start = 0.0
            child.restarts += 1
            self._spawn(child)
            return True
        return False
