"""What clients can make a server spend: descriptors, CPU (slowloris), memory.

These run the server in a child process under its own RLIMIT_NOFILE, as
``ulimit -n`` would set it, and read its CPU time from /proc.
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flags2.servers.limits import connection_capacity, limit_note
from flags2.servers.testing import read_response

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="reads /proc"
)


def _limit(soft: int, hard: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


@contextlib.contextmanager
def _server(
    soft: int, hard: int, *args: str
) -> Iterator[tuple[subprocess.Popen[str], int, list[str]]]:
    """Start ``python -m flags2.servers`` under the limit; yield it, port, banner."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "flags2.servers", "--port", "0", *(args or ["local"])],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=_limit(soft, hard),
    )
    assert proc.stdout is not None
    try:
        # The seed line, a note if any, then the URL line.
        banner = [proc.stdout.readline().strip()]
        while "http://" not in banner[-1]:
            banner.append(proc.stdout.readline().strip())
        port = int(banner[-1].split()[1].rsplit(":", 1)[1].split("/")[0])
        yield proc, port, banner
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - only on failure
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _soft_nofile(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no 'Max open files' line")  # pragma: no cover


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"hard descriptor limit {hard} leaves nothing to raise")
    with _server(256, hard) as (proc, _port, banner):
        assert _soft_nofile(proc.pid) >= min(hard, 2048)
    assert not any(line.startswith("note:") for line in banner)


def test_the_banner_says_when_1000_connections_do_not_fit() -> None:
    with _server(1024, 1024) as (proc, _port, banner):
        assert _soft_nofile(proc.pid) == 1024
    assert banner[1] == limit_note(1024)
    assert "at most 960 connections" in banner[1]


def test_limit_note_only_below_a_thousand_connections() -> None:
    assert connection_capacity(1024) == 960
    assert limit_note(4096) is None
    assert limit_note(1024) is not None


def test_slowloris_under_ulimit_1024_costs_little_cpu_and_does_not_block() -> None:
    count = 1100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 200:
        if hard != resource.RLIM_INFINITY and hard < count + 200:
            pytest.skip(f"this process may open only {hard} descriptors")
        resource.setrlimit(resource.RLIMIT_NOFILE, (count + 200, hard))
    idle = 1.5
    with _server(1024, 1024, "local", "--idle-timeout", str(idle)) as (proc, port, _):
        socks = []
        try:
            for _ in range(count):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))
                socks.append(sock)
            head = b"GET /flags/br/br.gif HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 99
            cpu_before, started = _cpu_seconds(proc.pid), time.monotonic()
            # A header byte a second on every connection, for a few head timeouts:
            # enough for the accepted heads to time out and the backlog to follow.
            for second in range(5):
                for sock in socks:
                    with contextlib.suppress(OSError):
                        sock.send(head[second : second + 1])
                time.sleep(1)
            cpu = _cpu_seconds(proc.pid) - cpu_before
            elapsed = time.monotonic() - started
            # What we measure is the server's own work, not a margin on speed:
            # spinning on EMFILE is a whole core (100%).
            assert cpu / elapsed < 0.30, f"{cpu:.2f} s CPU in {elapsed:.1f} s"
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"GET /flags/br/br.gif HTTP/1.1\r\nHost: t\r\n\r\n")
                with sock.makefile("rb") as reader:
                    assert read_response(reader).status == 200
        finally:
            for sock in socks:
                sock.close()


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")  # pragma: no cover


def test_memory_stays_bounded_whatever_paths_clients_send() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    def get(reader: io.BufferedReader, sock: socket.socket, target: str) -> int:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        return read_response(reader).status

    with contextlib.ExitStack() as stack:
        proc, port, _ = stack.enter_context(
            _server(1024, hard, "delay", "--max-delay", "0", "--min-delay", "0")
        )
        sock = stack.enter_context(
            socket.create_connection(("127.0.0.1", port), timeout=10)
        )
        reader = stack.enter_context(sock.makefile("rb"))
        for i in range(50):  # warm up: threads, buffers, the file cache
            get(reader, sock, f"/flags/warm{i}")
        before = _rss_mib(proc.pid)
        padding = "a" * 15_000  # a long path, in a head within HEAD_LIMIT
        statuses = {get(reader, sock, f"/flags/{i}{padding}") for i in range(3000)}
        after = _rss_mib(proc.pid)
    assert statuses == {404}
    # Every distinct path used to stay in the plan's counter: tens of MiB here.
    assert after - before < 15, f"{before:.1f} -> {after:.1f} MiB"
