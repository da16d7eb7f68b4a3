"""The options of issue 11 on ``flags2 download`` and the book's scripts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from typer.testing import CliRunner

from flags2.cli import app, mode_app
from tests.helpers import (
    MODES,
    flag_bytes,
    installed,
    real_metadata,
    serve_flags,
    serve_metadata,
)

runner = CliRunner()


@pytest.mark.parametrize("mode", MODES)
def test_the_new_options_parse_on_every_command(
    mode: str, httpserver: HTTPServer, dest: Path
) -> None:
    serve_flags(httpserver, ["BR"])
    serve_metadata(httpserver, {"BR": real_metadata("BR")})
    options = ["BR", "--names", "--skip-existing", "--rate", "100/s",
               "-d", str(dest), "-s", httpserver.url_for("/flags")]  # fmt: skip
    result = runner.invoke(app, ["download", "--mode", mode, *options])
    assert result.exit_code == 0, result.output
    assert (dest / "Brazil.gif").read_bytes() == flag_bytes("BR")
    again = runner.invoke(mode_app(mode), options)  # the book's script
    assert again.exit_code == 0, again.output
    assert "  1 flag skipped (already saved)." in again.output.splitlines()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0/s", "'0/s': at least 1 request per period"),
        ("abc", "'abc' is not N/s, N/m or N/h (a whole number N)"),
        ("5/x", "'5/x': the period must be s, m, h or d, not 'x'"),
        ("-5/s", "'-5/s' is not N/s, N/m or N/h (a whole number N)"),
    ],
)
@pytest.mark.parametrize("command", ["download", *MODES])
def test_a_bad_rate_is_one_line_and_exit_2(
    command: str, value: str, problem: str, httpserver: HTTPServer, dest: Path
) -> None:
    target, args = (
        (app, ["download"]) if command == "download" else (mode_app(command), [])
    )
    result = runner.invoke(
        target, [*args, "BR", "--rate", value, "-s", httpserver.url_for("/flags"),
                 "-d", str(dest)],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert errors == [f"Error: Invalid value for '--rate': {problem}"], result.output
    assert httpserver.log == []
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("script", ["flags2-sequential", "flags2-threadpool",
                                    "flags2-asyncio"])  # fmt: skip
def test_the_installed_scripts_take_the_new_options(
    script: str, httpserver: HTTPServer, dest: Path
) -> None:
    serve_flags(httpserver, ["BR"])
    serve_metadata(httpserver, {"BR": real_metadata("BR")})
    executable = installed(script)
    args = [executable, "BR", "--names", "--skip-existing", "--rate", "10/s",
            "-s", httpserver.url_for("/flags"), "-d", str(dest)]  # fmt: skip
    first = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert first.returncode == 0, first.stderr
    assert (dest / "Brazil.gif").read_bytes() == flag_bytes("BR")
    second = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert second.returncode == 0, second.stderr
    assert "  1 flag skipped (already saved)." in second.stdout.splitlines()
    assert "Traceback" not in first.stderr + second.stderr
