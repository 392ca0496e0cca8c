"""One holder of the embedded engine at a time, and a standby that takes over.

chDB lets one process open a data directory: a second metering on the same machine used to
fail to open it and exit (after its ``/readyz`` had said 200). Now each metering takes an
exclusive lock on ``<data dir>/clickhouse.lock`` before it opens the engine. The one that has
it runs; any other waits as a standby (``/readyz`` 503 with status ``standby``: it consumes
nothing and answers no query) and takes the lock, the engine and the work as soon as the
holder is gone. The kernel releases the lock of a process that dies, SIGKILL included, so a
standby takes over within a poll (``_POLL`` seconds) plus the engine's start. A ClickHouse
server (``http(s)://`` DSN) needs no lock: every replica is active on one durable consumer.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from pathlib import Path

log = logging.getLogger("switchyard.metering.standby")

_POLL = 0.5


class EngineLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if no other process holds it; kept until this process ends."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        """The pid the lock file names (the holder's, or the last holder's)."""
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    async def wait(self, stop: asyncio.Event) -> bool:
        """Wait as a standby until the lock is ours (True) or a stop is asked for (False)."""
        while not self.try_acquire():
            try:
                await asyncio.wait_for(stop.wait(), timeout=_POLL)
                return False
            except TimeoutError:
                continue
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
