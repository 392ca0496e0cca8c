"""shared/memory.py: pages of a file this process only read are released and read back on use;
pages it changed (as relocation changes a library's data before making it read-only) are kept."""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
from pathlib import Path

import pytest

from shared.memory import mappings, release_clean_pages

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")

PAGES = 64


def _resident_kib(path: Path) -> int:
    target = str(path.resolve())
    return sum(m.kib.get("Rss", 0) for m in mappings() if m.path == target)


def _file(tmp_path: Path, name: str) -> tuple[Path, bytes]:
    data = bytes(range(256)) * (PAGES * mmap.PAGESIZE // 256)
    path = tmp_path / name
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())  # the page cache holds the file's pages clean, as a library's are
    return path, data


def test_read_only_pages_are_released_and_read_back(tmp_path: Path) -> None:
    path, data = _file(tmp_path, "library.bin")
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ) as view:
        assert view[:] == data  # every page touched: resident
        before = _resident_kib(path)
        assert before >= PAGES * mmap.PAGESIZE // 1024
        assert release_clean_pages(path) == before
        assert _resident_kib(path) == 0
        assert view[:] == data  # read again from the file


def test_pages_the_process_changed_are_kept(tmp_path: Path) -> None:
    path, data = _file(tmp_path, "relocated.bin")
    with path.open("rb") as fh:
        view = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)  # private, copy on write
    try:
        view[0:4] = b"\xff\xfe\xfd\xfc"  # one page now belongs to this process only
        assert view[4:] == data[4:]
        # Read-only from now on, as a library's relocated data is after loading.
        address = ctypes.addressof(ctypes.c_char.from_buffer(view))
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        assert libc.mprotect(address, len(data), mmap.PROT_READ) == 0
        (mapping,) = [m for m in mappings() if m.path == str(path.resolve())]
        assert "w" not in mapping.perms and not mapping.untouched_copy
        assert release_clean_pages(path) == 0
        assert view[0:4] == b"\xff\xfe\xfd\xfc" and view[4:] == data[4:]
    finally:
        libc.mprotect(address, len(data), mmap.PROT_READ | mmap.PROT_WRITE)
        view.close()
