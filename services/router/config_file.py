"""The routing configuration file (``GATEWAY_CONFIG``): read at start, re-read when it changes
and on SIGHUP. A version that does not parse or does not fit the catalog is refused with a
message naming its line, and the last good one stays in force."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from shared.gateway_config import ConfigError, GatewayConfig, Locator, parse_config

log = logging.getLogger("switchyard.router.config")


@dataclass
class Candidate:
    """A new version of the file, parsed, not yet in force."""

    config: GatewayConfig
    locate: Locator
    digest: str


class ConfigFile:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.config = GatewayConfig()  # the version in force
        self.error = ""  # why the newest version on disk was refused ("" when it is in force)
        self._digest = ""  # of the version in force, or of the last refused one
        self._stat: tuple[int, int, int] | None = None  # (inode, size, mtime) when last read

    def read(self, *, force: bool = False) -> Candidate | None:
        """The file's new version, if it changed since the last read; None if it did not or
        if it was refused (``error`` says why). The periodic check compares the file's inode,
        size and modification time; ``force`` (SIGHUP) reads it whatever they say."""
        if self.path is None:
            return None
        try:
            info = self.path.stat()
            stat = (info.st_ino, info.st_size, info.st_mtime_ns)
            if stat == self._stat and not force:
                return None
            self._stat = stat
            raw = self.path.read_bytes()
        except OSError as exc:
            digest = f"unreadable:{exc.errno}"
            if digest != self._digest:
                self._digest = digest
                self.refuse(f"cannot read it: {exc.strerror or exc}")
            return None
        digest = hashlib.sha256(raw).hexdigest()
        if digest == self._digest:
            return None
        self._digest = digest
        try:
            config, locate = parse_config(raw.decode("utf-8"))
        except UnicodeDecodeError:
            self.refuse("it is not UTF-8 text")
            return None
        except ConfigError as exc:
            self.refuse(str(exc))
            return None
        return Candidate(config, locate, digest)

    def refuse(self, why: str) -> None:
        self.error = f"{self.path}: {why}"
        log.error("configuration refused, the running one stays: %s", self.error)

    def refuse_candidate(self, candidate: Candidate, exc: ConfigError) -> None:
        """The candidate parsed but does not fit the catalog: name the line of the object."""
        path: tuple[str | int, ...] = tuple(int(p) if p.isdigit() else p for p in exc.where.split(".") if p)
        line = candidate.locate(path) if path else None
        self.refuse(str(ConfigError(exc.message, line, exc.where)))

    def accept(self, candidate: Candidate) -> None:
        self.config = candidate.config
        self.error = ""
        log.info(
            "configuration %s in force: %d accounts, %d virtual models, %d aliases, %d deprecations",
            self.path,
            len(self.config.accounts),
            len(self.config.models),
            len(self.config.aliases),
            len(self.config.deprecated),
        )
