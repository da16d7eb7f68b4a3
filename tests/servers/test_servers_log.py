"""``--log`` output: what a client sends is shown escaped, never written raw."""

from __future__ import annotations

import io
import socket
import time
from typing import Any

import pytest

import flags2.servers.handler
from flags2.servers.testing import read_response, running

# ESC [31m (red), BEL, SOH, DEL, "é" in UTF-8, and CSI (a C1 control that
# some terminals also obey); none of them is whitespace to str.split.
HOSTILE = b"/flags/\x1b[31mred\x07\x01\x7f\xc3\xa9\x9b\\x"
ESCAPED = r"/flags/\x1b[31mred\x07\x01\x7f\xc3\xa9\x9b\\x"


def _clean(text: str) -> bool:
    """True if `text` is lines of printable ASCII only."""
    return all(" " <= char <= "~" for line in text.splitlines() for char in line)


def _send(port: int, request: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        with sock.makefile("rb") as reader:
            return read_response(reader).status


def _lines(log: io.StringIO, count: int) -> list[str]:
    # A handler writes its line once the answer is out.
    deadline = time.monotonic() + 5
    while len(log.getvalue().splitlines()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return log.getvalue().splitlines()


@pytest.mark.parametrize("kind", ["local", "delay", "error"])
def test_a_hostile_path_is_logged_escaped(kind: str) -> None:
    log = io.StringIO()
    with running(kind, log=True, log_stream=log, error_rate=0.0) as server:
        status = _send(server.port, b"GET " + HOSTILE + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        (line,) = _lines(log, 1)
    assert status == 404
    assert line == f"{ESCAPED} delay: {line.split('delay: ')[1]}"
    assert _clean(log.getvalue())


def test_a_path_with_bad_escapes_is_logged_escaped() -> None:
    log = io.StringIO()
    with running("local", log=True, log_stream=log) as server:
        request = b"GET /%ff\x1b]0;owned\x07 HTTP/1.1\r\nHost: t\r\n\r\n"
        assert _send(server.port, request) == 400
        (line,) = _lines(log, 1)
    assert line == r"/%ff\x1b]0;owned\x07 GET 400"
    assert _clean(log.getvalue())


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /x HTTP/\x1b[2J\xe9",  # a bad version
        b"G\x1bT\xe9 /x HTTP/1.1",  # an unknown method
        b"GET /x\x1b[2J junk\xe9 HTTP/1.1",  # bad syntax
    ],
)
def test_protocol_errors_are_logged_escaped(request_line: bytes) -> None:
    log = io.StringIO()
    with running("local", log=True, log_stream=log) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(request_line + b"\r\nHost: t\r\n\r\n")
            # http.server answers a bad version the HTTP/0.9 way: a bare body.
            assert b"Error response" in sock.makefile("rb").read()
        lines = _lines(log, 1)
    assert lines
    assert _clean(log.getvalue())
    assert "\\xe9" in log.getvalue() or "\\x1b" in log.getvalue()


def test_a_bug_s_message_is_logged_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError(f"planted bug at {args[2]}")

    monkeypatch.setattr(flags2.servers.handler, "planned", broken)
    log = io.StringIO()
    with running("delay", log=True, log_stream=log) as server:
        request = b"GET /\x1b[31m HTTP/1.1\r\nHost: t\r\n\r\n"
        assert _send(server.port, request) == 500
        deadline = time.monotonic() + 5
        while "RuntimeError: planted" not in log.getvalue().split("Traceback")[-1]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    text = log.getvalue()
    assert "error serving 127.0.0.1: RuntimeError: planted bug at /\\x1b[31m" in text
    # With --log the traceback follows, one line per line, also escaped.
    assert "Traceback (most recent call last):" in text.splitlines()
    assert _clean(text)
