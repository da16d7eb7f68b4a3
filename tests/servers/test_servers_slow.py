"""`python -m servers.slow`: the book's slow_server.py command line."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections import defaultdict

import httpx2 as httpx

from flags2.servers.options import ServerOptions
from flags2.servers.plan import planned
from tests.helpers import noise

PATHS = ["/flags/br/br.gif", "/flags/cn/cn.gif", "/flags/br/br.gif", "/flags/zz/zz.gif"]


def _run_slow(
    *args: str, module: str = "servers.slow"
) -> tuple[int, str, list[str], int]:
    """Start the slow server on a free port, GET PATHS, SIGINT it.

    Returns the port, stdout, the status codes seen and the exit status; stderr
    (the log) is appended to stdout after a separator line.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline() + proc.stdout.readline()
        match = re.search(
            r"Serving HTTP on 127\.0\.0\.1 port (\d+) \(http://127\.0\.0\.1:\1/\)",
            banner,
        )
        assert match, banner
        port = int(match[1])
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            statuses = [str(client.get(path).status_code) for path in PATHS]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:  # pragma: no cover - only on failure
            proc.kill()
            proc.wait()
    return port, banner + out + "\n--\n" + err, statuses, proc.returncode


def test_the_installed_name_serves_the_same() -> None:
    # `servers.slow` is the book's command, from a checkout; installed, the
    # package is flags2.servers.
    _, _, statuses, code = _run_slow(
        "--error-rate", "1", "--min-delay", "0", "--max-delay", "0.01",
        module="flags2.servers.slow",
    )  # fmt: skip
    assert code == 0
    assert statuses == ["418"] * 4


def test_book_command_line_logs_and_exits_cleanly() -> None:
    _, output, statuses, code = _run_slow(
        "--error-rate", "1", "--min-delay", "0", "--max-delay", "0.01"
    )
    assert code == 0
    assert statuses == ["418"] * 4  # the book's fault
    assert "Keyboard interrupt received, exiting." in output
    log = output.split("\n--\n")[1]
    assert re.search(r"^BR delay: 0\.0\ds 418 teapot$", log, re.MULTILINE)
    assert noise(log) == [], log


def test_without_error_rate_it_is_the_delay_server_and_q_silences_it() -> None:
    _, output, statuses, code = _run_slow(
        "-q", "--min-delay", "0", "--max-delay", "0.01"
    )
    assert code == 0
    assert statuses == ["200", "200", "200", "404"]
    assert "delay:" not in output


def test_same_seed_same_plan_as_the_cli() -> None:
    args = [
        "--seed",
        "9",
        "--error-rate",
        "0.5",
        "--min-delay",
        "0",
        "--max-delay",
        "0.05",
    ]
    _, output, statuses, _ = _run_slow(*args)
    assert output.startswith("seed 9 ")
    options = ServerOptions(seed=9, error_rate=0.5, min_delay=0, max_delay=0.05)
    lines = [ln for ln in output.split("\n--\n")[1].splitlines() if "delay:" in ln]
    nth: dict[str, int] = defaultdict(int)
    expected = []
    for path, status in zip(PATHS, statuses, strict=True):
        plan = planned(9, "error", path, nth[path], options)
        nth[path] += 1
        fault = "" if plan.fault is None else f" {plan.fault}"
        expected.append(f"delay: {plan.delay:.2f}s {status}{fault}")
    assert [line.split(" ", 1)[1] for line in lines] == expected
