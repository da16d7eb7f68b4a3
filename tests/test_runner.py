"""A whole run: every mode agrees, and the bundled server starts and stops."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from flags2.runner import EXIT_ERRORS, EXIT_OK, load_mode, run
from flags2.settings import Settings
from servers.launch import is_listening
from tests.conftest import MODES, leftovers, serve_flags


def test_every_mode_gets_the_same_counts_and_identical_files(
    httpserver: HTTPServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve_flags(httpserver, ["BR", "CN", "IN", "US"])
    httpserver.expect_request("/flags/id/id.gif").respond_with_data(b"", status=418)
    codes = ["BR", "CN", "ID", "IN", "US", "XX", "ZZ"]
    outcomes = {}
    for mode in MODES:
        dest = tmp_path / mode
        dest.mkdir()
        settings = Settings(
            base_url=httpserver.url_for("/flags"),
            server="CUSTOM",
            dest=dest,
            concurrency=min(4, load_mode(mode).MAX_CONCUR_REQ),
        )
        assert run(mode, codes, settings) == EXIT_ERRORS  # ID is a 418
        tail = capsys.readouterr().out.splitlines()[-5:-1]
        files = {p.name: p.read_bytes() for p in dest.iterdir()}
        outcomes[mode] = (tail, files)
    first = outcomes["sequential"]
    assert first[0] == [
        "-" * 20,
        "  4 flags downloaded.",
        "  2 not found.",
        "  1 error.",
    ]
    assert sorted(first[1]) == ["BR.gif", "CN.gif", "IN.gif", "US.gif"]
    for mode in MODES:
        assert outcomes[mode] == first, mode


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_processes(port: int) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"servers" in args and str(port).encode() in args:
            found.append(cmdline.parent.name)
    return found


def test_bundled_server_runs_for_the_command_only(
    dest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _free_port()
    settings = Settings(
        base_url=f"http://localhost:{port}/flags",
        server="LOCAL",
        dest=dest,
        concurrency=5,
    )
    assert run("asyncio", ["BR", "CN", "ZZ"], settings) == EXIT_OK
    captured = capsys.readouterr()
    assert f"nothing answered on localhost:{port}, so the bundled LOCAL server" in (
        captured.err
    )
    assert "  2 flags downloaded." in captured.out
    assert sorted(p.name for p in dest.iterdir()) == ["BR.gif", "CN.gif"]
    assert not is_listening("127.0.0.1", port)
    assert _server_processes(port) == []


def test_no_serve_means_errors_and_a_hint(
    dest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _free_port()
    settings = Settings(
        base_url=f"http://localhost:{port}/flags", server="DELAY", dest=dest
    )
    assert run("sequential", ["BR"], settings, serve=False) == EXIT_ERRORS
    captured = capsys.readouterr()
    assert "  1 error." in captured.out
    assert "start it with 'flags2 serve delay', or drop --no-serve" in captured.err
    assert leftovers(dest) == [] and not list(dest.iterdir())


def test_a_server_already_running_is_used_not_replaced(
    httpserver: HTTPServer, dest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve_flags(httpserver, ["BR"])
    settings = Settings(
        base_url=httpserver.url_for("/flags"), server="ERROR", dest=dest
    )
    assert run("threadpool", ["BR"], settings) == EXIT_OK
    assert "bundled" not in capsys.readouterr().err
    assert len(httpserver.log) == 1
