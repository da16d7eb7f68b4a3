"""`servers.launch.shared`: a bundled server lives as long as any run using it.

Each "run" here is a child process holding `shared` open until told to stop on
its stdin, as two terminals running ``flags2 download`` would; the server is
their grandchild, so its life is watched through /proc.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from flags2.servers.launch import is_listening, shared
from flags2.servers.lease import AVAILABLE, Lease
from tests.servers.test_servers_launch import pid_alive, wait_gone

pytestmark = pytest.mark.skipif(
    not (AVAILABLE and Path("/proc/self/stat").exists()),
    reason="needs flock leases and /proc",
)

_RUN = textwrap.dedent(
    """
    import json, sys
    from flags2.servers.launch import shared
    with shared(sys.argv[1], port=int(sys.argv[2])) as started:
        print(json.dumps(started.pid if started else None), flush=True)
        sys.stdin.readline()
    print("done", flush=True)
    """
)

_DOWNLOAD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from flags2.runner import run
    from flags2.settings import Settings
    mode, port, dest, concurrency, *codes = sys.argv[1:]
    settings = Settings(
        base_url=f"http://localhost:{port}/flags", site="DELAY",
        dest=Path(dest), concurrency=int(concurrency),
    )
    sys.exit(run(mode, codes, settings))
    """
)


class _Run:
    """A child process using the bundled server on a port, like one download."""

    def __init__(self, kind: str, port: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _RUN, kind, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.started: int | None = json.loads(self.proc.stdout.readline())

    def end(self, timeout: float = 10) -> float:
        """Let the run finish; return how long its exit took."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        began = time.monotonic()
        self.proc.stdin.write("\n")
        self.proc.stdin.close()
        assert self.proc.stdout.readline() == "done\n"
        self.proc.wait(timeout=timeout)
        self.proc.stdout.close()
        return time.monotonic() - began

    def kill(self, signum: int) -> None:
        self.proc.send_signal(signum)
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()

    def cleanup(self) -> None:
        if self.proc.poll() is None:  # pragma: no cover - only on failure
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def runs() -> Iterator[list[_Run]]:
    """Runs started by a test; any still alive are killed at teardown."""
    started: list[_Run] = []
    yield started
    for run in started:
        run.cleanup()


@pytest.fixture
def port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _session(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[3])


def _get_ok(port: int) -> bool:
    response = httpx.get(f"http://127.0.0.1:{port}/flags/br/br.gif", timeout=5)
    return response.status_code == 200


def test_a_lone_run_stops_its_server_as_it_ends(runs: list[_Run], port: int) -> None:
    runs.append(first := _Run("local", port))
    assert first.started is not None and _get_ok(port)
    first.end()
    # The run waited for it: gone already, not some time later.
    assert not pid_alive(first.started)
    assert not is_listening("127.0.0.1", port)


def test_the_server_outlives_its_starter_while_another_run_uses_it(
    runs: list[_Run], port: int
) -> None:
    runs.append(first := _Run("local", port))
    runs.append(second := _Run("local", port))
    server = first.started
    assert server is not None and second.started is None  # joined, not started
    # In a session of its own from the start: no signal to the starter's
    # group or terminal reaches it.
    assert _session(server) == server != os.getsid(0)
    assert first.end() < 3  # the starter does not wait for the other run
    assert pid_alive(server) and _get_ok(port)
    second.end()
    assert wait_gone(server, timeout=5)
    assert not is_listening("127.0.0.1", port)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_starter_killed_keeps_the_server_for_the_other_run(
    runs: list[_Run], port: int, signum: int
) -> None:
    runs.append(first := _Run("local", port))
    runs.append(second := _Run("local", port))
    server = first.started
    assert server is not None
    first.kill(signum)
    assert pid_alive(server) and _get_ok(port)
    second.end()
    assert wait_gone(server, timeout=5)  # no orphan once the last run is gone


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_lone_starter_killed_leaves_no_orphan(
    runs: list[_Run], port: int, signum: int
) -> None:
    runs.append(first := _Run("local", port))
    server = first.started
    assert server is not None
    first.kill(signum)
    assert wait_gone(server, timeout=5)
    assert not is_listening("127.0.0.1", port)


def test_a_joiner_killed_lets_the_server_stop_with_its_starter(
    runs: list[_Run], port: int
) -> None:
    runs.append(first := _Run("local", port))
    runs.append(second := _Run("local", port))
    server = first.started
    assert server is not None
    second.kill(signal.SIGKILL)
    first.end()
    assert not pid_alive(server)


def test_a_run_after_the_last_one_starts_a_fresh_server(
    runs: list[_Run], port: int
) -> None:
    runs.append(first := _Run("local", port))
    first.end()
    runs.append(second := _Run("local", port))
    assert second.started is not None and second.started != first.started
    assert _get_ok(port)
    second.end()


def test_two_downloads_share_the_bundled_delay_server_without_errors(
    tmp_path: Path, port: int
) -> None:
    def download(dest: str, concurrency: int, *codes: str) -> subprocess.Popen[str]:
        (tmp_path / dest).mkdir()
        args = ["threadpool", str(port), str(tmp_path / dest), str(concurrency)]
        return subprocess.Popen(
            [sys.executable, "-c", _DOWNLOAD, *args, *codes],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    # The first is short (one round of DELAY's 0.5-5 s); the second, two
    # rounds, is still downloading when the first ends and leaves.
    first = download("a", 3, "BR", "CN", "IN")
    second = None
    try:
        assert first.stderr is not None
        assert "so the bundled DELAY server" in first.stderr.readline()
        second = download("b", 4, "US", "ID", "PK", "NG", "BD", "RU", "MX", "JP")
        first_out, _ = first.communicate(timeout=30)
        second_still_running = second.poll() is None
        second_out, second_err = second.communicate(timeout=60)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:  # pragma: no cover
                proc.kill()
                proc.wait()
    assert first.returncode == 0 and second.returncode == 0, second_err
    assert "  3 flags downloaded." in first_out
    assert "  8 flags downloaded." in second_out
    assert "error" not in first_out + second_out
    assert "bundled" not in second_err  # it used the first run's server
    if not second_still_running:  # pragma: no cover - rare with random delays
        pytest.skip("the second run ended first; the sharing was not exercised")
    deadline = time.monotonic() + 5  # the server stops once both are gone
    while is_listening("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_listening("127.0.0.1", port)


def test_lease_semantics(tmp_path: Path) -> None:
    path = tmp_path / "port.lease"
    run_a, run_b, server = Lease(path), Lease(path), Lease(path)
    assert run_a.share(timeout=1) and run_b.share(timeout=1)  # runs share it
    assert not server.take_if_unused()
    run_a.release()
    assert not server.take_if_unused()  # run_b still holds it
    run_b.release()
    run_b.release()  # harmless twice
    assert server.take_if_unused() and server.held
    started = time.monotonic()
    assert not run_a.share(timeout=0.2)  # a stopping server holds it
    assert time.monotonic() - started >= 0.2
    server.release()
    assert run_a.share(timeout=1)
    run_a.release()


def test_without_a_usable_lease_file_a_run_still_gets_a_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, port: int
) -> None:
    import flags2.servers.launch

    missing = tmp_path / "no-such-dir" / "port.lease"
    monkeypatch.setattr(flags2.servers.launch, "lease_path", lambda port: missing)
    with shared("local", port=port) as started:
        assert started is not None and _get_ok(port)
    assert not pid_alive(started.pid)  # private, so stopped with the block
