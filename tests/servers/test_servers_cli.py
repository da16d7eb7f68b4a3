"""`python -m servers` (what `flags2 serve` runs): arguments, errors, start and stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from flags2.codes import all_country_codes
from flags2.servers.cli import main
from flags2.servers.options import ServerOptions
from flags2.servers.plan import planned
from tests.helpers import noise


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something is already listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_port_in_use_is_one_line_and_exit_2(
    busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["local", "--port", str(busy_port)], prog="flags2 serve") == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("flags2 serve: error: port ")
    assert f"{busy_port} is already in use" in err


def test_port_in_use_releases_the_ports_already_bound() -> None:
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = int(probe.getsockname()[1])
        with socket.socket() as busy:
            try:
                busy.bind(("127.0.0.1", free + 1))
            except OSError:
                continue  # pragma: no cover - neighbour taken, try another
            busy.listen()
            # LOCAL binds `free`, then DELAY hits the busy port next to it.
            assert main(["local", "delay", "--port", str(free)]) == 2
        with socket.socket() as again:
            again.bind(("127.0.0.1", free))  # raises if LOCAL still held it
        return
    pytest.fail("no pair of free consecutive ports")  # pragma: no cover


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--error-rate", "2"], "error rate must be between 0 and 1"),
        (["--faults", "bogus"], "unknown fault 'bogus'"),
        (["--min-delay", "3", "--max-delay", "1"], "below min delay"),
        (["slowest"], "invalid server kind 'slowest'"),
        (["--port", "70000"], "port must be 0-65535"),
        (["--seed", "x"], "invalid seed"),
        (["-d", "/no/such/dir"], "directory not found"),
        (["--bind", "no.such.host.invalid"], "cannot bind"),
        (["--log", "--quiet"], "not allowed with"),
    ],
)
def test_bad_values_are_one_line_and_exit_2(
    args: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--port", "0", *args], prog="flags2 serve") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("flags2 serve: error: ")
    assert problem in err


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"], prog="flags2 serve") == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: flags2 serve")
    for option in (
        "--port",
        "--bind",
        "--seed",
        "--min-delay",
        "--max-delay",
        "--error-rate",
        "--faults",
        "--stall",
        "--directory",
        "--log",
        "--quiet",
    ):
        assert option in out
    assert "--supervised" not in out


def _gif(cc: str) -> str:
    return f"/{cc.lower()}/{cc.lower()}.gif"


def _no_answer(sock: socket.socket) -> bytes:
    """What `sock` receives before its peer is gone (b"" when nothing)."""
    sock.settimeout(5)
    try:
        return sock.recv(100)
    except ConnectionResetError:
        return b""


def test_serves_until_sigint_and_exits_0(tmp_path: Path) -> None:
    # Seed 5 and delays of 0-30 s: the plan says which GET ERROR answers at
    # once and which it holds for over 20 s, so those are surely in flight.
    options = ServerOptions(seed=5, min_delay=0, max_delay=30, error_rate=1)
    delays = sorted(
        (planned(5, "error", "/flags" + _gif(cc), 0, options).delay, cc)
        for cc in all_country_codes()
    )
    (quick_delay, quick), held = delays[0], [cc for _, cc in delays[-4:]]
    assert quick_delay < 0.5 and delays[-4][0] > 20, delays
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flags2.servers",
            "local",
            "error",
            "--port",
            "0",
            "--seed",
            "5",
            "--min-delay",
            "0",
            "--max-delay",
            "30",
            "--error-rate",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,  # the data is found from the package, not the cwd
    )
    waiting: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        banner = [proc.stdout.readline() for _ in range(3)]
        assert banner[0].startswith("seed 5 ")
        urls = dict(re.findall(r"^(LOCAL|ERROR) +(\S+)", "".join(banner), re.MULTILINE))
        assert set(urls) == {"LOCAL", "ERROR"}
        error = httpx.URL(urls["ERROR"])
        with httpx.Client() as client:
            assert client.get(urls["LOCAL"] + "/br/br.gif").status_code == 200
            assert client.get(urls["ERROR"] + _gif(quick)).status_code == 418
            for cc in held:
                sock = socket.create_connection((error.host, error.port), timeout=5)
                waiting.append(sock)
                sock.sendall(
                    f"GET {error.path}{_gif(cc)} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
                )
            deadline = time.monotonic() + 10
            stats = error.join("/_stats")
            while client.get(stats).json()["in_flight"] != len(held):
                assert time.monotonic() < deadline, client.get(stats).json()
                time.sleep(0.01)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=5)
        assert time.monotonic() - started < 2  # prompt, with requests in flight
        assert [_no_answer(sock) for sock in waiting] == [b""] * len(held)
    finally:
        for sock in waiting:
            sock.close()
        if proc.poll() is None:  # pragma: no cover - only on failure
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert noise(err) == [], err
    assert "servers stopped" in err


def test_sigterm_stops_cleanly() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "flags2.servers", "delay", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("seed ")  # random seed, printed
    assert proc.stdout.readline().startswith("DELAY ")
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=5)
    assert proc.returncode == 0 and noise(err) == [], err
