"""Resident memory a process holds only because of its start-up (Linux).

A large shared library runs much of its code once, while it starts: the embedded ClickHouse
engine (chDB, a 530 MB library) touches some 170 MiB of its code and read-only data while it
registers its functions and formats, and those pages stay in the process's resident set,
counted by ``ps``, ``top`` and container limits, though nothing reads them again.

``release_clean_pages`` hands such pages back: for each mapping of the library that is not
writable and holds no page the process changed (no anonymous, no dirty pages: relocated data
is left alone), ``madvise(MADV_DONTNEED)`` drops the mapping's pages from the process. They
are copies of the file, so nothing is lost: a page used again is read back from the page
cache (or the file) on its next access. Elsewhere than on Linux it does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("switchyard.memory")

_MADV_DONTNEED = 4
_MAPPING = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$")


@dataclass
class Mapping:
    start: int
    end: int
    perms: str
    path: str
    kib: dict[str, int] = field(default_factory=dict)  # the smaps fields in kB: Rss, Anonymous, ...

    @property
    def untouched_copy(self) -> bool:
        """Read-only, and every resident page still the file's own."""
        return (
            "w" not in self.perms
            and self.kib.get("Anonymous", 1) == 0
            and self.kib.get("Private_Dirty", 1) == 0
            and self.kib.get("Shared_Dirty", 1) == 0
        )


def mappings(smaps: Path = Path("/proc/self/smaps")) -> list[Mapping]:
    found: list[Mapping] = []
    for line in smaps.read_text().splitlines():
        head = _MAPPING.match(line)
        if head is not None:
            found.append(Mapping(int(head[1], 16), int(head[2], 16), head[3], head[4].strip()))
            continue
        name, _, rest = line.partition(":")
        value = rest.split()
        if found and len(value) == 2 and value[1] == "kB":
            found[-1].kib[name] = int(value[0])
    return found


def release_clean_pages(library: Path) -> int:
    """Drop from this process the resident pages of ``library`` it has not changed; returns
    the KiB released (0 where this cannot be done)."""
    if not sys.platform.startswith("linux"):
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    target = str(library.resolve())
    released = 0
    for mapping in mappings():
        if mapping.path != target or not mapping.untouched_copy:
            continue
        if madvise(mapping.start, mapping.end - mapping.start, _MADV_DONTNEED) == 0:
            released += mapping.kib.get("Rss", 0)
        else:
            log.debug("madvise on %s failed: errno %d", target, ctypes.get_errno())
    return released
