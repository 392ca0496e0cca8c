"""One log configuration (shared/logs.py): text and JSON lines with the service, pid and the
request id of the request being served, and the launcher's rotation (stack/supervisor.py)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import logs
from stack.supervisor import RotatingLog


@pytest.fixture
def captured(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    yield capsys
    logging.getLogger().handlers.clear()


def test_json_lines_carry_time_level_service_pid_request_id_and_fields(captured: pytest.CaptureFixture[str]) -> None:
    logs.configure("edge", "INFO", "json")
    token = logs.request_id.set("req_abc")
    try:
        logging.getLogger("switchyard.access").info("POST /v1/x 200", extra={"status": 200, "model": "m"})
    finally:
        logs.request_id.reset(token)
    logging.getLogger("switchyard.other").debug("below the level")
    lines = captured.readouterr().out.splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["level"] == "INFO" and line["service"] == "edge" and line["pid"] == os.getpid()
    assert line["request_id"] == "req_abc" and line["status"] == 200 and line["model"] == "m"
    assert line["logger"] == "switchyard.access" and line["message"] == "POST /v1/x 200"
    assert line["time"].endswith("+00:00")


def test_text_lines_say_the_same_on_one_line(captured: pytest.CaptureFixture[str]) -> None:
    logs.configure("metering", "INFO", "text")
    logging.getLogger("switchyard.access").info(
        "POST /v1/x 200", extra={"method": "POST", "status": 200, "model": "two words"}
    )
    line = captured.readouterr().out.strip()
    assert f"metering[{os.getpid()}] INFO switchyard.access: POST /v1/x 200" in line
    assert line.endswith('model="two words"') and "status=" not in line  # the message says it already
    assert "request_id" not in line  # no request being served


def test_the_log_rotates_at_line_ends_and_keeps_the_backups(tmp_path: Path) -> None:
    path = tmp_path / "edge.log"
    out = RotatingLog(path, max_bytes=100, backups=2)
    lines = [f"line {i:03d} {'x' * 20}\n".encode() for i in range(30)]  # 30 bytes each
    for i in range(0, 30, 4):
        out.write(b"".join(lines[i : i + 4]))  # several lines per write, as a pipe delivers them
    out.close()
    files = [path, path.with_name("edge.log.1"), path.with_name("edge.log.2")]
    assert not path.with_name("edge.log.3").exists()
    kept = b"".join(f.read_bytes() for f in reversed(files))
    assert all(f.stat().st_size <= 100 for f in files)
    assert kept.endswith(lines[-1]) and kept.count(b"\n") == len(kept.splitlines())
    for f in files:
        assert all(line.startswith(b"line ") for line in f.read_bytes().splitlines())  # whole lines only


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_fast_access_line_is_the_configured_format(captured: pytest.CaptureFixture[str], fmt: str) -> None:
    logs.configure("edge", "INFO", fmt)
    log = logging.getLogger("switchyard.access")
    fields = {"method": "GET", "path": "/x y", "status": 404, "latency_ms": 1.5, "client": "127.0.0.1"}
    token = logs.request_id.set("client-id-1")
    try:
        log.info("GET /x y 404", extra=fields)
        logs.info_line(log, "GET /x y 404", fields)
    finally:
        logs.request_id.reset(token)
    by_handler, fast = captured.readouterr().out.splitlines()
    if fmt == "json":
        a, b = json.loads(by_handler), json.loads(fast)
        assert a.pop("time")[:19] == b.pop("time")[:19] and a == b
    else:
        assert by_handler.split(" ", 2)[2] == fast.split(" ", 2)[2]  # all but the time


def test_a_line_split_across_two_reads_stays_in_one_file(tmp_path: Path) -> None:
    path = tmp_path / "edge.log"
    out = RotatingLog(path, max_bytes=50, backups=3)
    out.write(b"a" * 30 + b"\n" + b"long line begins")  # the pipe's read ended inside a line
    out.write(b" and goes on past the limit\nshort\n")
    out.write(b"x" * 80)  # a line longer than the limit, its end still to come
    out.write(b"x\nlast\n")
    out.close()
    files = sorted(tmp_path.glob("edge.log*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    lines = [line for f in files for line in f.read_bytes().splitlines(keepends=True)]
    assert (
        b"".join(lines)
        == b"a" * 30 + b"\nlong line begins and goes on past the limit\nshort\n" + b"x" * 81 + b"\nlast\n"
    )
    for f in files:
        assert f.read_bytes().endswith(b"\n")  # every file ends at a line's end: none was cut
