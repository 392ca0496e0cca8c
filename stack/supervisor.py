"""Child processes started, watched and restarted with backoff; stopped without orphans.

Each child gets ``PR_SET_PDEATHSIG`` (Linux), so even a launcher killed with SIGKILL takes
its children with it. Output goes to one log file per child under the data dir, read from a
pipe by a thread of the launcher and rotated by size (``GATEWAY_LOG_MAX_BYTES``, keeping
``GATEWAY_LOG_BACKUPS`` older files: ``edge.log.1`` is the newest of those).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from shared.runner import die_with_parent

log = logging.getLogger("switchyard.stack")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    die_with_parent()
    os.setpgrp()  # its own group: Ctrl-C reaches the launcher, which stops children in order


def _preexec(nice: int) -> Callable[[], None]:
    def run() -> None:
        _die_with_parent()
        if nice:
            os.nice(nice)

    return run


def _private_append(path: Path) -> BinaryIO:
    """A log file only its owner reads (a child's output may carry what it prints at start)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")


class RotatingLog:
    """A log file that is renamed to ``.1`` (and older ones shifted) once it would pass
    ``max_bytes``. Rotation happens only at a line's end, so no line is split across files: a
    line that does not fit (or a line the pipe delivered in two reads) finishes in the file it
    began in, which may then pass ``max_bytes`` by less than one line."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._out = _private_append(path)
        self._size = self._out.tell()
        self._mid_line = False  # the file ends inside a line (its end is still to come)

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._out.closed:
                return
            while data and self._size + len(data) > self.max_bytes and self.backups > 0:
                cut = data.rfind(b"\n", 0, max(self.max_bytes - self._size, 0)) + 1
                if cut == 0 and (self._mid_line or self._size == 0):
                    cut = data.find(b"\n") + 1  # finish the line begun here, whatever its length
                    if cut == 0:
                        break  # its end has not come yet: keep writing it here
                self._put(data[:cut])
                data = data[cut:]
                self._rotate()
            self._put(data)
            self._out.flush()

    def _put(self, data: bytes) -> None:
        if data:
            self._out.write(data)
            self._size += len(data)
            self._mid_line = not data.endswith(b"\n")

    def _rotate(self) -> None:
        self._out.close()
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._out = _private_append(self.path)
        self._size = 0
        self._mid_line = False

    def copy_from(self, fd: int) -> None:
        """Copy everything read from ``fd`` until its end (the child exited)."""
        try:
            while chunk := os.read(fd, 65536):
                self.write(chunk)
        finally:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            self._out.close()


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
    log: RotatingLog | None = None
    log_reader: threading.Thread | None = None
    wanted: bool = False
    restarts: int = 0
    started_at: float = 0.0
    next_start: float = 0.0
    failures: int = 0
    history: list[int] = field(default_factory=list)


class Supervisor:
    def __init__(self, poll_interval: float = 0.2, *, log_max_bytes: int = 10 << 20, log_backups: int = 5) -> None:
        self.children: dict[str, Child] = {}
        self.log_max_bytes = log_max_bytes
        self.log_backups = log_backups
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
        if child.log is None:
            child.log = RotatingLog(spec.log_file, self.log_max_bytes, self.log_backups)
        read, write = os.pipe()
        try:
            child.proc = subprocess.Popen(
                spec.argv,
                env=spec.env,
                stdin=subprocess.DEVNULL,
                stdout=write,
                stderr=subprocess.STDOUT,
                preexec_fn=_preexec(spec.nice),
                close_fds=True,
            )
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)
        child.log_reader = threading.Thread(
            target=child.log.copy_from, args=(read,), name=f"log-{spec.name}", daemon=True
        )
        child.log_reader.start()
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
        for child in self.children.values():
            if child.log_reader is not None:
                child.log_reader.join(timeout=2)  # the last lines of a child that just exited
            if child.log is not None:
                child.log.close()

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
