"""The command line, through typer's CliRunner, against a real local server."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from typer.testing import CliRunner

from flags2 import __version__
from flags2.cli import app, mode_app
from flags2.codes import all_country_codes
from tests.helpers import MODES, flag_bytes, serve_flags

runner = CliRunner()


@pytest.fixture
def world(httpserver: HTTPServer) -> str:
    """A server with all 194 flags; its base URL."""
    serve_flags(httpserver, list(all_country_codes()))
    return httpserver.url_for("/flags")


def download(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["download", *args])
    return result.exit_code, result.output


def test_letters_are_the_books_first_example(world: str, dest: Path) -> None:
    code, out = download("a", "b", "c", "-s", world, "-d", str(dest))
    expected_ok = sum(1 for cc in all_country_codes() if cc[0] in "ABC")
    assert code == 0
    assert out.splitlines()[:3] == [
        f"CUSTOM site: {world}",
        "Searching for 78 flags: from AA to CZ",
        "5 concurrent connections will be used.",
    ]
    assert "-" * 20 in out
    assert f"{expected_ok:3} flags downloaded." in out
    assert f"{78 - expected_ok:3} not found." in out
    assert "error" not in out
    assert len(list(dest.glob("*.gif"))) == expected_ok


def test_combined_short_flags_all_with_limit(world: str, dest: Path) -> None:
    code, out = download(
        "-al", "100", "-s", world, "-d", str(dest), "--mode", "threadpool"
    )
    assert code == 0
    assert "Searching for 100 flags: from AD to LK" in out
    assert "30 concurrent connections will be used." in out
    assert "100 flags downloaded." in out


def test_every_asks_for_676_codes(world: str, dest: Path) -> None:
    code, out = download("-e", "--max-req", "100", "-s", world, "-d", str(dest))
    assert code == 0
    assert "Searching for 676 flags: from AA to ZZ" in out
    assert "100 concurrent connections will be used." in out
    assert "194 flags downloaded." in out and "482 not found." in out


@pytest.mark.parametrize(
    ("mode", "line"),
    [
        ("sequential", "1 connection will be used."),
        ("threadpool", "12 concurrent connections will be used."),  # capped to codes
        ("asyncio", "5 concurrent connections will be used."),
    ],
)
def test_each_script_has_the_books_default_concurrency(
    world: str, dest: Path, mode: str, line: str
) -> None:
    result = runner.invoke(mode_app(mode), ["-s", world, "-d", str(dest), "-l", "12"])
    assert result.exit_code == 0, result.output
    assert line in result.output
    assert "Searching for 12 flags: from BD to JP" in result.output


def test_scripts_have_no_mode_option(world: str) -> None:
    result = runner.invoke(mode_app("sequential"), ["--mode", "asyncio", "-s", world])
    assert result.exit_code == 2
    assert "No such option: --mode" in result.output


def test_max_req_is_capped_by_the_mode(world: str, dest: Path) -> None:
    code, out = download(
        "-e", "-m", "5000", "--mode", "threadpool", "-s", world, "-d", str(dest)
    )
    assert code == 0
    assert "676 concurrent connections will be used." in out
    code, out = download(
        "-m", "50", "--mode", "sequential", "-s", world, "-d", str(dest)
    )
    assert "1 connection will be used." in out


def test_verbose_prints_one_line_per_flag(httpserver: HTTPServer, dest: Path) -> None:
    serve_flags(httpserver, ["BR"])
    httpserver.expect_request("/flags/xx/xx.gif").respond_with_data(b"", status=418)
    url = httpserver.url_for("/flags")
    code, out = download("br", "zz", "xx", "-v", "-s", url, "-d", str(dest))
    assert code == 1  # an error
    lines = out.splitlines()
    assert "BR OK" in lines
    assert f"ZZ not found: {url}/zz/zz.gif" in lines
    assert any(line.startswith("XX error: HTTP error 418") for line in lines)
    assert "  1 error." in lines


def test_not_found_alone_exits_zero(httpserver: HTTPServer, dest: Path) -> None:
    code, out = download("zz", "-s", httpserver.url_for("/flags"), "-d", str(dest))
    assert code == 0
    assert "  1 not found." in out


def test_refused_connection_is_error_exit_1_with_a_hint(
    closed_port: int, dest: Path
) -> None:
    url = f"http://127.0.0.1:{closed_port}/flags"
    code, out = download("br", "cn", "-s", url, "-d", str(dest))
    assert code == 1
    assert "  2 errors." in out
    assert f"hint: nothing answers at {url}" in out


def test_json_record_describes_the_run(
    httpserver: HTTPServer, tmp_path: Path, dest: Path
) -> None:
    serve_flags(httpserver, ["BR"])
    record_path = tmp_path / "run.json"
    url = httpserver.url_for("/flags")
    code, _ = download(
        "br",
        "zz",
        "-s",
        url,
        "-d",
        str(dest),
        "--json",
        str(record_path),
        "--mode",
        "threadpool",
    )
    assert code == 0
    record = json.loads(record_path.read_text())
    assert record["mode"] == "threadpool"
    assert (record["server"], record["base_url"], record["concurrency"]) == (
        "CUSTOM",
        url,
        2,
    )
    assert record["counts"] == {
        "OK": 1,
        "NOT_FOUND": 1,
        "ERROR": 0,
        "CANCELLED": 0,
        "SKIPPED": 0,
    }
    assert record["elapsed"] > 0
    br, zz = record["flags"]
    assert br["cc"] == "BR" and br["status"] == "OK" and br["http_status"] == 200
    assert br["bytes"] == len(flag_bytes("BR")) and br["attempts"] == 1
    assert 0 <= br["started"] <= br["finished"] <= record["elapsed"] + 0.01
    assert br["error"] is None
    assert (zz["status"], zz["http_status"], zz["bytes"]) == ("NOT_FOUND", 404, 0)
    assert set(br) == {
        "cc",
        "status",
        "http_status",
        "bytes",
        "attempts",
        "started",
        "finished",
        "consumed",
        "error",
        "file",
        "http_version",
        "final_url",
    }
    assert br["file"] == "BR.gif" and zz["file"] is None
    assert br["final_url"] is None  # not redirected


def test_json_to_stdout_is_pure_json(httpserver: HTTPServer, dest: Path) -> None:
    separate = CliRunner()  # stdout and stderr are kept apart: stdout holds the JSON
    result = separate.invoke(
        app,
        [
            "download",
            "zz",
            "-s",
            httpserver.url_for("/flags"),
            "-d",
            str(dest),
            "--json",
            "-",
        ],
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout)["counts"]["NOT_FOUND"] == 1
    assert "Searching for 1 flag: ZZ" in result.stderr


def test_dest_is_created_when_missing(httpserver: HTTPServer, tmp_path: Path) -> None:
    serve_flags(httpserver, ["BR"])
    dest = tmp_path / "new" / "folder"
    code, _ = download("br", "-s", httpserver.url_for("/flags"), "-d", str(dest))
    assert code == 0
    assert (dest / "BR.gif").read_bytes() == flag_bytes("BR")


def test_server_labels_ignore_case(dest: Path) -> None:
    _, out = download(
        "br", "-s", "delay", "--no-serve", "-d", str(dest), "--timeout", "0.5"
    )
    assert out.splitlines()[0] == "DELAY site: http://localhost:8001/flags"


def test_version() -> None:
    result = runner.invoke(app, ["download", "--version"])
    assert result.exit_code == 0
    assert result.output.startswith("flags2 ")


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["1"], "invalid country code '1'"),
        (["ABC"], "invalid country code 'ABC'"),
        (["a1"], "invalid country code 'a1'"),
        (["é"], "invalid country code 'é'"),
        (["-m", "0"], "'-m' / '--max_req' / '--max-req': 0 is not in the range x>=1"),
        (["-m", "x"], "Invalid value for '-m'"),
        (["-l", "0"], "'-l' / '--limit': 0 is not in the range x>=1"),
        (["-l", "1.5"], "Invalid value for '-l'"),
        (["-s", "NOWHERE"], "-s/--server 'NOWHERE': not one of"),
        (["-s", "ftp://x/flags"], "-s/--server 'ftp://x/flags': not one of"),
        (["-s", "http://:80"], "-s/--server 'http://:80': not an http(s):// base URL"),
        (["-s", "http://host:99999/flags"], "malformed host or port"),
        (["--timeout", "-1"], "--timeout must be a positive number"),
        (["--timeout", "0"], "--timeout must be a positive number"),
        (["--retries", "-1"], "'--retries': -1 is not in the range 0<=x<=10"),
        (["--mode", "fork"], "'fork' is not one of"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], problem: str, httpserver: HTTPServer
) -> None:
    extra = [] if "-s" in args else ["-s", httpserver.url_for("/flags")]
    code, out = download(*args, *extra)
    assert code == 2, out
    assert "Traceback" not in out
    assert out.startswith("Usage: flags2 download")
    errors = [line for line in out.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and problem in errors[0], out
    assert httpserver.log == []  # checked before any request


def test_dest_that_is_a_file_is_refused(tmp_path: Path, httpserver: HTTPServer) -> None:
    target = tmp_path / "file"
    target.write_text("keep me")
    code, out = download("br", "-s", httpserver.url_for("/flags"), "-d", str(target))
    assert code == 2
    assert f"Invalid value for '-d' / '--dest': Directory '{target}' is a file." in out
    assert target.read_text() == "keep me"
    assert httpserver.log == []


def test_dest_that_cannot_be_created_is_refused(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / "sub"
    code, out = download("br", "-s", httpserver.url_for("/flags"), "-d", str(target))
    assert code == 2
    assert f"-d/--dest '{target}' is not writable" in out
    assert httpserver.log == []


def test_json_into_a_missing_folder_is_refused(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    code, out = download(
        "br",
        "-s",
        httpserver.url_for("/flags"),
        "--json",
        str(tmp_path / "no" / "x.json"),
    )
    assert code == 2
    assert "--json: folder" in out


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_json_that_fails_to_write_at_the_end_is_one_line_and_exit_1(
    httpserver: HTTPServer, dest: Path
) -> None:
    serve_flags(httpserver, ["BR"])
    # /dev/full opens for writing like any file, then refuses every write.
    code, out = download("br", "-s", httpserver.url_for("/flags"), "-d", str(dest),
                         "--json", "/dev/full")  # fmt: skip
    assert code == 1
    assert "flags2: could not write --json /dev/full: No space left on device" in out
    assert "Traceback" not in out
    assert (dest / "BR.gif").read_bytes() == flag_bytes("BR")


@pytest.mark.parametrize(
    "command",
    [[], ["download"], ["bench"], ["serve"]],
    ids=["flags2", "download", "bench", "serve"],
)
@pytest.mark.parametrize("option", ["-h", "--help"])
def test_help_on_every_command(command: list[str], option: str) -> None:
    result = runner.invoke(app, [*command, option])
    assert result.exit_code == 0, result.output
    assert result.output.lower().startswith("usage: flags2")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("option", ["-h", "--help"])
def test_help_on_every_script(mode: str, option: str) -> None:
    result = runner.invoke(mode_app(mode), [option])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "--server" in result.output
    assert "--mode" not in result.output


def test_version_of_the_command_itself() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"flags2 {__version__}\n"


def test_the_base_url_is_used_as_given_and_its_password_never_shown(
    httpserver: HTTPServer, tmp_path: Path, dest: Path
) -> None:
    httpserver.expect_request(
        "/Data/Flags/br/br.gif",
        headers={"Authorization": "Basic " + base64.b64encode(b"user:S3cret").decode()},
    ).respond_with_data(flag_bytes("BR"), content_type="image/gif")
    port = httpserver.port
    url = f"http://user:S3cret@127.0.0.1:{port}/Data/Flags"
    shown = f"http://user:***@127.0.0.1:{port}/Data/Flags"
    record = tmp_path / "run.json"
    code, out = download("br", "zz", "-v", "-s", url, "-d", str(dest),
                         "--json", str(record))  # fmt: skip
    assert code == 0, out
    assert out.splitlines()[0] == f"CUSTOM site: {shown}"
    assert f"ZZ not found: {shown}/zz/zz.gif" in out.splitlines()
    assert "S3cret" not in out
    assert json.loads(record.read_text())["base_url"] == shown
    assert "S3cret" not in record.read_text()
    assert (dest / "BR.gif").read_bytes() == flag_bytes("BR")
    assert sorted(entry[0].path for entry in httpserver.log) == [
        "/Data/Flags/br/br.gif",
        "/Data/Flags/zz/zz.gif",
    ]


def test_a_hint_never_shows_the_password(closed_port: int, dest: Path) -> None:
    url = f"http://me:S3cret@127.0.0.1:{closed_port}/flags"
    code, out = download("br", "-s", url, "-d", str(dest))
    assert code == 1
    assert f"hint: nothing answers at http://me:***@127.0.0.1:{closed_port}/flags" in (
        out
    )
    assert "S3cret" not in out


def _one_error_line(output: str) -> str:
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, output
    return errors[0]


@pytest.mark.parametrize(
    ("server", "problem"),
    [
        ("http://h/flags?token=abc", "cannot have a query (?) or a fragment (#)"),
        ("http://h/flags#top", "cannot have a query (?) or a fragment (#)"),
        ("http://u:S3cret@h/flags?x", "'http://u:***@h/flags?x'"),
        ("http://[::1", "malformed host or port"),
        ("http://[zz]/flags", "malformed host or port"),
        ("http://h:0/flags", "port 0"),
    ],
)
@pytest.mark.parametrize("command", ["download", "bench"])
def test_a_base_url_that_cannot_work_is_refused_before_any_request(
    server: str,
    problem: str,
    command: str,
    httpserver: HTTPServer,
    tmp_path: Path,
) -> None:
    dest = tmp_path / "new"
    option = "-s" if command == "download" else "--url"
    args = [command, option, server]
    if command == "download":
        args += ["-d", str(dest)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    line = _one_error_line(result.output)
    assert problem in line and "S3cret" not in result.output
    assert not dest.exists()
    assert httpserver.log == []


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--retries", "11"], "'--retries': 11 is not in the range 0<=x<=10"),
        (["--timeout", "nan"], "--timeout must be a positive number"),
        (["--timeout", "inf"], "--timeout must be a positive number"),
        (["--json", ""], "--json '': a file name is needed, not a folder"),
        (["--json", "."], "--json '.': a file name is needed, not a folder"),
        (["--json", "no/such/run.json"], "--json: folder 'no/such' does not exist"),
        (["-m", "0"], "0 is not in the range x>=1"),
        (["-s", "http://[::1"], "malformed host or port"),
        (["zz9"], "invalid country code"),
        (["--mode", "fork"], "'fork' is not one of"),
    ],
)
def test_a_usage_error_creates_nothing(
    args: list[str],
    problem: str,
    httpserver: HTTPServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    dest = tmp_path / "new" / "dest"
    extra = [] if "-s" in args else ["-s", httpserver.url_for("/flags")]
    code, out = download(*args, *extra, "-d", str(dest))
    assert code == 2, out
    assert problem in _one_error_line(out)
    assert not (tmp_path / "new").exists()
    assert httpserver.log == []


def test_retries_up_to_the_maximum_are_accepted(
    httpserver: HTTPServer, dest: Path
) -> None:
    code, out = download("zz", "--retries", "10", "-s", httpserver.url_for("/flags"),
                         "-d", str(dest))  # fmt: skip
    assert code == 0, out


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process may not create files in, found by trying.

    A folder without write permission, unless the tests run as root (who may
    write anywhere): then Linux's /sys/kernel, which refuses even root.
    """
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    for folder in (locked, Path("/sys/kernel")):
        try:
            (folder / "probe").touch()
        except PermissionError:
            return folder
        except OSError:
            continue
        (folder / "probe").unlink()
    pytest.skip("no folder here refuses this user a new file")


def test_json_in_a_folder_that_cannot_be_written_is_refused(
    httpserver: HTTPServer, tmp_path: Path, dest: Path
) -> None:
    locked = _unwritable_folder(tmp_path)
    code, out = download("br", "-s", httpserver.url_for("/flags"), "-d", str(dest),
                         "--json", str(locked / "run.json"))  # fmt: skip
    assert code == 2
    assert "is not writable: Permission denied" in _one_error_line(out)
    assert httpserver.log == []


def test_json_that_is_a_file_without_write_access_is_refused(
    httpserver: HTTPServer, dest: Path
) -> None:
    # /sys files refuse writing even to root.
    target = Path("/sys/kernel/notes")
    if not target.exists():
        pytest.skip("needs Linux's /sys")
    code, out = download("br", "-s", httpserver.url_for("/flags"), "-d", str(dest),
                         "--json", str(target))  # fmt: skip
    assert code == 2, out
    assert "--json '/sys/kernel/notes' is not writable" in _one_error_line(out)
    assert httpserver.log == []


@pytest.fixture
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("variable", "value"),
    [("ALL_PROXY", "socks5://u:pw@127.0.0.1:1080"), ("http_proxy", "ftp://p:21")],
)
def test_an_unsupported_proxy_is_one_line_naming_the_variable(
    variable: str,
    value: str,
    no_proxies: pytest.MonkeyPatch,
    httpserver: HTTPServer,
    tmp_path: Path,
) -> None:
    no_proxies.setenv(variable, value)
    dest = tmp_path / "new"
    code, out = download("br", "-s", httpserver.url_for("/flags"), "-d", str(dest))
    assert code == 2, out
    line = _one_error_line(out)
    assert line.startswith(f"Error: {variable}=") and "is not supported" in line
    assert ":pw@" not in out
    assert not dest.exists()
    assert httpserver.log == []


def test_errors_through_a_proxy_say_so(
    no_proxies: pytest.MonkeyPatch, httpserver: HTTPServer, dest: Path
) -> None:
    # The loopback server plays a proxy that cannot reach the origin.
    httpserver.expect_request(re.compile(".*")).respond_with_data(
        "no route", status=502
    )
    proxy = f"http://127.0.0.1:{httpserver.port}"
    no_proxies.setenv("HTTP_PROXY", proxy)
    code, out = download("br", "-v", "-s", "http://flags.invalid/flags", "-d",
                         str(dest))  # fmt: skip
    assert code == 1
    assert f"BR error: HTTP error 502 - BAD GATEWAY (through proxy {proxy})" in (
        out.splitlines()
    )
    assert httpserver.log, "the request went to the proxy"


def test_a_dead_proxy_is_named_in_each_error_and_the_hint(
    no_proxies: pytest.MonkeyPatch, closed_port: int, dest: Path
) -> None:
    proxy = f"http://me:S3cret@127.0.0.1:{closed_port}"
    shown = f"http://me:***@127.0.0.1:{closed_port}"
    no_proxies.setenv("HTTP_PROXY", proxy)
    code, out = download("br", "cn", "-v", "-s", "http://flags.invalid/flags",
                         "-d", str(dest))  # fmt: skip
    assert code == 1
    errors = [line for line in out.splitlines() if " error: " in line]
    assert len(errors) == 2
    assert all(line.endswith(f"(through proxy {shown})") for line in errors)
    assert (
        f"hint: nothing answers at http://flags.invalid/flags through proxy {shown};"
        " is the proxy running?"
    ) in out
    assert "S3cret" not in out


def test_dest_that_is_a_device_is_refused(httpserver: HTTPServer) -> None:
    code, out = download("br", "-s", httpserver.url_for("/flags"), "-d", "/dev/null")
    assert code == 2
    assert "-d/--dest '/dev/null' is not a folder" in _one_error_line(out)
    assert httpserver.log == []


def test_json_into_a_fifo_nobody_reads_is_refused_at_once(
    httpserver: HTTPServer, tmp_path: Path, dest: Path
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code, out = download("br", "-s", httpserver.url_for("/flags"), "-d", str(dest),
                         "--json", str(fifo))  # fmt: skip
    assert code == 2
    assert f"--json '{fifo}' is not writable" in _one_error_line(out)


@pytest.mark.parametrize(
    "args",
    [
        ["download", "--help"],
        ["download", "--bogus"],
        ["download", "-m", "x"],
        ["download", "-s", "nope"],
        ["download", "--mode", "nope"],
        ["download", "--version"],
        ["download", "extra", "--rate", "1/x"],
    ],
)
def test_a_download_is_parsed_by_a_group_of_download_alone_that_says_the_same(
    args: list[str],
) -> None:
    # `flags2 download` builds no other command's options (cli.main), and a
    # newcomer sees no difference: help, errors and exit statuses match.
    import typer.main

    from flags2.cli import _download_app

    small = _download_app()
    assert list(typer.main.get_group(small).commands) == ["download"]
    full = runner.invoke(app, args, prog_name="flags2")
    alone = runner.invoke(small, args, prog_name="flags2")
    assert (alone.exit_code, alone.output) == (full.exit_code, full.output)
