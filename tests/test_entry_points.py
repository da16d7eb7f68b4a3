"""The installed commands, run as a user runs them: real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from tests.conftest import flag_bytes, serve_flags


@pytest.mark.parametrize(
    ("command", "connections"),
    [
        (["flags2-sequential"], "1 connection will be used."),
        (["flags2-threadpool"], "2 concurrent connections will be used."),
        (["flags2-asyncio"], "2 concurrent connections will be used."),
        (["flags2", "download", "--mode", "threadpool"], "2 concurrent connections"),
        ([sys.executable, "-m", "flags2", "download"], "2 concurrent connections"),
    ],
)
def test_installed_commands_download(
    command: list[str], connections: str, httpserver: HTTPServer, dest: Path
) -> None:
    serve_flags(httpserver, ["BR"])
    executable = shutil.which(command[0])
    assert executable is not None, f"{command[0]} is not installed"
    proc = subprocess.run(
        [
            executable,
            *command[1:],
            "BR",
            "ZZ",
            "-v",
            "-s",
            httpserver.url_for("/flags"),
            "-d",
            str(dest),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert connections in proc.stdout
    assert "BR OK" in proc.stdout.splitlines()
    assert (dest / "BR.gif").read_bytes() == flag_bytes("BR")


def test_usage_error_from_a_real_process_is_exit_2_without_traceback() -> None:
    executable = shutil.which("flags2-asyncio")
    assert executable is not None
    proc = subprocess.run(
        [executable, "-m", "0"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "Error: -m/--max_req CONCURRENT must be >= 1" in proc.stderr


@pytest.mark.parametrize(
    "script", ["flags2-sequential", "flags2-threadpool", "flags2-asyncio"]
)
def test_a_failed_flag_exits_1_after_the_whole_report_reaches_the_pipe(
    script: str, httpserver: HTTPServer, dest: Path
) -> None:
    # The commands end without finalising the interpreter: the exit status
    # and every line of the report must survive that.
    serve_flags(httpserver, ["BR"])
    httpserver.expect_request("/flags/cn/cn.gif").respond_with_data("no", status=500)
    executable = shutil.which(script)
    assert executable is not None
    base = httpserver.url_for("/flags")
    # Block-buffered, as stdout into a pipe is unless the environment says not.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.run(
        [executable, "BR", "CN", "ZZ", "-s", base, "-d", str(dest)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-4:-1] == ["  1 flag downloaded.", "  1 not found.", "  1 error."]
    assert lines[-1].startswith("Elapsed time: ")
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["BR.gif"]
