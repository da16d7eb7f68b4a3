"""`servers.launch.background`: servers in a child process that never outlives us."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from flags2.servers.launch import LaunchError, background, is_listening

FAST = ["--min-delay", "0", "--max-delay", "0.01"]


def pid_alive(pid: int) -> bool:
    """True if `pid` runs; a zombie waiting for its reaper counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for `pid` to exit; True if it did."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pid_alive(pid)


def test_background_starts_and_stops_its_process() -> None:
    with background(["local", "delay"], args=["--seed", "3", *FAST]) as running:
        assert running.seed == 3
        assert set(running.urls) == {"local", "delay"}
        assert pid_alive(running.pid)
        with httpx.Client() as client:
            for url in running.urls.values():
                assert client.get(url + "/br/br.gif").status_code == 200
            stats = client.get(running.urls["delay"].removesuffix("/flags") + "/_stats")
        assert stats.json()["seed"] == 3
        port = running.ports["local"]
        assert running.urls["local"] == f"http://127.0.0.1:{port}/flags"
        assert is_listening("127.0.0.1", port)
    assert not pid_alive(running.pid)
    assert not is_listening("127.0.0.1", port)


def test_background_stops_on_exception() -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        background(["error"], args=FAST) as running,
    ):
        raise RuntimeError("boom")
    assert not pid_alive(running.pid)


def test_background_on_a_fixed_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    with background(["local"], port=port) as running:
        assert running.ports == {"local": port}
        assert is_listening("127.0.0.1", port)


def test_background_reports_why_it_failed() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = int(busy.getsockname()[1])
        message = f"port {port} is already in use"
        with (
            pytest.raises(LaunchError, match=message),
            background(["delay"], port=port),
        ):
            pass  # pragma: no cover - never reached


def test_background_rejects_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="kind"), background(["slow"]):
        pass  # pragma: no cover - never reached


def test_child_exits_when_the_parent_is_killed() -> None:
    parent_code = textwrap.dedent(
        """
        import sys, time
        from flags2.servers.launch import background
        with background(["delay"]) as running:
            print(running.pid, flush=True)
            time.sleep(60)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert pid_alive(child_pid)
        parent.kill()  # SIGKILL: no cleanup code runs in the parent
        parent.wait()
        assert wait_gone(child_pid, timeout=5)  # stdin EOF stopped the orphan
    finally:
        if parent.poll() is None:  # pragma: no cover - only on failure
            parent.kill()
            parent.wait()


def test_is_listening_on_a_closed_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    assert not is_listening("127.0.0.1", port)


def test_the_launcher_runs_servers_with_this_interpreter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not whichever python is first on PATH: this one has flags2 installed.
    started: list[list[str]] = []
    real_popen = subprocess.Popen

    def spy(args: list[str], **options: Any) -> subprocess.Popen[str]:
        started.append(list(args))
        return real_popen(args, **options)

    monkeypatch.setattr(subprocess, "Popen", spy)
    with background(["local"], args=FAST) as running:
        assert httpx.get(running.urls["local"] + "/br/br.gif").status_code == 200
    assert [args[0] for args in started] == [sys.executable]
