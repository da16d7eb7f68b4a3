"""The installed commands, run as a user runs them: real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flags2 import __version__
from tests.helpers import flag_bytes, installed, serve_flags

SCRIPTS = [
    "flags2-sequential",
    "flags2-threadpool",
    "flags2-asyncio",
    "flags2-processpool",
]


def _program(name: str) -> str:
    """The interpreter as it is, any other command as installed beside it."""
    return name if name == sys.executable else installed(name)


def _block_buffered() -> dict[str, str]:
    """The environment, with stdout block-buffered as into any pipe."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


def test_every_command_is_found_beside_the_interpreter_whatever_path_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As when the venv's python is run by its path, its bin/ not on PATH.
    monkeypatch.setenv("PATH", os.defpath)
    scripts = metadata.distribution("flags2").entry_points.select(
        group="console_scripts"
    )
    assert sorted(script.name for script in scripts) == sorted(["flags2", *SCRIPTS])
    beside = {Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))}
    for script in scripts:
        found = Path(installed(script.name))
        assert found.parent in beside and found.stem == script.name, found


def test_a_missing_command_fails_the_test_rather_than_skipping_it() -> None:
    with pytest.raises(pytest.fail.Exception) as failed:
        installed("flags2-not-a-command")
    assert "flags2-not-a-command is not installed beside" in str(failed.value)
    assert sys.executable in str(failed.value)


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
    executable = _program(command[0])
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
    executable = installed("flags2-asyncio")
    proc = subprocess.run(
        [executable, "-m", "0"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "Error: Invalid value for '-m' / '--max_req' / '--max-req': 0" in proc.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_failed_flag_exits_1_after_the_whole_report_reaches_the_pipe(
    script: str, httpserver: HTTPServer, dest: Path
) -> None:
    # The commands end without finalising the interpreter: the exit status
    # and every line of the report must survive that.
    serve_flags(httpserver, ["BR"])
    httpserver.expect_request("/flags/cn/cn.gif").respond_with_data("no", status=500)
    executable = installed(script)
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
    executable = installed(script)
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
    executable = installed("flags2-sequential")
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
    executable = installed("flags2-asyncio")

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


@pytest.mark.parametrize(
    "command",
    [
        ["flags2"],
        ["flags2", "download"],
        ["flags2", "serve"],
        ["flags2", "bench"],
        *[[script] for script in SCRIPTS],
    ],
    ids=" ".join,
)
@pytest.mark.parametrize("option", ["-h", "--help"])
def test_help_on_every_installed_command(command: list[str], option: str) -> None:
    proc = subprocess.run(
        [installed(command[0]), *command[1:], option],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.lower().startswith("usage: ")
    assert proc.stderr == ""


@pytest.mark.parametrize(
    "command", [["flags2"], [sys.executable, "-m", "flags2"]], ids=["flags2", "-m"]
)
def test_version(command: list[str]) -> None:
    proc = subprocess.run(
        [_program(command[0]), *command[1:], "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"flags2 {__version__}\n"


def _shell(
    redirect: str, *args: str, **options: Any
) -> subprocess.CompletedProcess[str]:
    """Run `args` with `redirect` applied by a shell (which closes streams first)."""
    return subprocess.run(
        ["sh", "-c", f'"$0" "$@" {redirect}', *args],
        text=True,
        timeout=60,
        env=_block_buffered(),
        **options,
    )


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize(
    ("redirect", "status"),
    [(">&-", 0), ("2>&-", 0), (">&- 2>&-", 0), (">/dev/full", 120)],
)
def test_odd_stdio_still_downloads_every_flag(
    script: str, redirect: str, status: int, httpserver: HTTPServer, dest: Path
) -> None:
    codes = ["BR", "CN", "IN", "US"]
    serve_flags(httpserver, codes)
    base = httpserver.url_for("/flags")
    args = [installed(script), *codes, "ZZ", "-v", "-s", base, "-d", str(dest)]
    if "2>" in redirect:
        proc = _shell(redirect, *args, stdout=subprocess.PIPE)
        errors = ""
    else:
        proc = _shell(redirect, *args, stderr=subprocess.PIPE)
        errors = proc.stderr
    assert proc.returncode == status, errors
    assert "Traceback" not in errors
    if status == 120:
        assert errors == "flags2: could not write all of the output\n"
    assert sorted(p.name for p in dest.iterdir()) == [f"{cc}.gif" for cc in codes]


def test_a_failing_run_keeps_its_status_when_output_is_lost(
    httpserver: HTTPServer, dest: Path
) -> None:
    httpserver.expect_request("/flags/cn/cn.gif").respond_with_data("no", status=500)
    proc = _shell(">/dev/full", installed("flags2-asyncio"), "CN", "-s",
                  httpserver.url_for("/flags"), "-d", str(dest),
                  stderr=subprocess.PIPE)  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr


def test_closed_stdout_gives_no_descriptor_to_the_files_of_the_run(
    httpserver: HTTPServer, dest: Path, tmp_path: Path
) -> None:
    # With descriptor 1 closed, the --json file would be opened as 1; /dev/null
    # takes its place, so nothing written to stdout can land in the record.
    serve_flags(httpserver, ["BR"])
    record = tmp_path / "run.json"
    proc = _shell(">&-", installed("flags2-sequential"), "BR", "-v", "--json",
                  str(record), "-s", httpserver.url_for("/flags"), "-d", str(dest),
                  stderr=subprocess.PIPE)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(record.read_text())["counts"]["OK"] == 1
