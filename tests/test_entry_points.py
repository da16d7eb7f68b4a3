"""The installed commands, run as a user runs them: real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.conftest import flag_bytes, serve_flags

SCRIPTS = ["flags2-sequential", "flags2-threadpool", "flags2-asyncio"]


def _installed(command: str) -> str:
    executable = shutil.which(command)
    assert executable is not None, f"{command} is not installed"
    return executable


def _block_buffered() -> dict[str, str]:
    """The environment, with stdout block-buffered as into any pipe."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


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
    executable = _installed(command[0])
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
    executable = _installed("flags2-asyncio")
    proc = subprocess.run(
        [executable, "-m", "0"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "Error: -m/--max_req CONCURRENT must be >= 1" in proc.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_failed_flag_exits_1_after_the_whole_report_reaches_the_pipe(
    script: str, httpserver: HTTPServer, dest: Path
) -> None:
    # The commands end without finalising the interpreter: the exit status
    # and every line of the report must survive that.
    serve_flags(httpserver, ["BR"])
    httpserver.expect_request("/flags/cn/cn.gif").respond_with_data("no", status=500)
    executable = _installed(script)
    base = httpserver.url_for("/flags")
    env = _block_buffered()
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


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_reader_that_goes_away_ends_the_run_without_a_traceback(
    script: str, httpserver: HTTPServer, dest: Path
) -> None:
    # `flags2-asyncio -v ... | head -4`: the reader leaves after the initial
    # report, so the first line that fails is a flag's, printed mid-run.
    reader_gone = threading.Event()

    def slow(request: Request) -> Response:
        reader_gone.wait(30)  # BR's line comes once nobody reads any more
        return Response(flag_bytes("BR"), content_type="image/gif")

    httpserver.expect_request("/flags/br/br.gif").respond_with_handler(slow)
    executable = _installed(script)
    base = httpserver.url_for("/flags")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # each line is written at once
    with subprocess.Popen(
        [executable, "BR", "-v", "-s", base, "-d", str(dest)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        while (line := proc.stdout.readline()) and "will be used." not in line:
            pass
        proc.stdout.close()
        reader_gone.set()
        stderr = proc.stderr.read()
        returncode = proc.wait(timeout=60)
    assert returncode == 1
    assert "Traceback" not in stderr
    assert not [p for p in dest.iterdir() if p.suffix == ".part"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_output_that_cannot_be_written_is_not_a_success(
    httpserver: HTTPServer, dest: Path
) -> None:
    # --json - leaves the record in stdout's buffer until the very end.
    serve_flags(httpserver, ["BR"])
    executable = _installed("flags2-sequential")
    env = _block_buffered()
    base = httpserver.url_for("/flags")
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [executable, "BR", "--json", "-", "-s", base, "-d", str(dest)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env=env,
        )
    assert proc.returncode == 120
    assert "flags2: could not write all of the output" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_closed_standard_streams_keep_the_exit_status() -> None:
    executable = _installed("flags2-asyncio")

    def run(redirect: str, *args: str) -> subprocess.CompletedProcess[str]:
        script = f'"$0" "$@" {redirect}'  # the shell closes the stream first
        return subprocess.run(
            ["sh", "-c", script, executable, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert run("2>&-", "-m", "0").returncode == 2
    shown = run(">&-", "--help")
    assert shown.returncode == 0
    assert "Traceback" not in shown.stderr
