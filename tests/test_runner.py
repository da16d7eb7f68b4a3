"""A whole run: every mode agrees, and the bundled server starts and stops."""

from __future__ import annotations

import errno
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from flags2 import save
from flags2.codes import all_country_codes
from flags2.runner import EXIT_ERRORS, EXIT_OK, effective_concurrency, load_mode, run
from flags2.servers.launch import is_listening
from flags2.settings import Settings
from tests.helpers import MODES, Script, flag_bytes, installed, leftovers, serve_flags


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
            site="CUSTOM",
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
        if b"flags2.servers" in args and str(port).encode() in args:
            found.append(cmdline.parent.name)
    return found


def test_bundled_server_runs_for_the_command_only(
    dest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _free_port()
    settings = Settings(
        base_url=f"http://localhost:{port}/flags",
        site="LOCAL",
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
        base_url=f"http://localhost:{port}/flags", site="DELAY", dest=dest
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
    settings = Settings(base_url=httpserver.url_for("/flags"), site="ERROR", dest=dest)
    assert run("threadpool", ["BR"], settings) == EXIT_OK
    assert "bundled" not in capsys.readouterr().err
    assert len(httpserver.log) == 1


def _settings(mode: str, base_url: str, dest: Path, **options: Any) -> Settings:
    module = load_mode(mode)
    return Settings(
        base_url=base_url,
        site="CUSTOM",
        dest=dest,
        concurrency=module.DEFAULT_CONCUR_REQ,
        **options,
    )


@pytest.mark.parametrize("mode", MODES)
def test_a_full_disk_stops_the_run_with_one_message(
    mode: str,
    httpserver: HTTPServer,
    dest: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    codes = list(all_country_codes())[:60]
    serve_flags(httpserver, codes)
    real_write, written = save._write_all, []

    def filling(fd: int, body: bytes) -> None:
        # The OS's write fails from the fourth file on, as on a full disk.
        written.append(fd)
        if len(written) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(fd, body)

    monkeypatch.setattr(save, "_write_all", filling)
    settings = _settings(mode, httpserver.url_for("/flags"), dest)
    assert run(mode, codes, settings) == EXIT_ERRORS
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"flags2: cannot save flags in {str(dest)!r}: No space left on device;"
        " the run stops here"
    ]
    assert "Traceback" not in captured.out + captured.err
    # Each worker process has its own copy of the patched write: 3 files each.
    workers = settings.concurrency if mode == "processpool" else 1
    errors = re.search(r"^\s*(\d+) errors?\.$", captured.out, re.M)
    assert errors and 1 <= int(errors.group(1)) <= workers, captured.out
    cancelled = re.search(r"^\s*(\d+) cancelled\.$", captured.out, re.M)
    assert cancelled and int(cancelled.group(1)) >= 60 - 30 - 4, captured.out
    assert leftovers(dest) == []
    saved = sorted(p.name for p in dest.iterdir())
    assert 3 <= len(saved) <= 3 * workers
    assert f"{len(saved):3} flags downloaded." in captured.out
    for name in saved:
        assert (dest / name).read_bytes() == flag_bytes(name[:2])


def _mount_small_tmpfs(folder: Path) -> None:
    folder.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
            check=True,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        pytest.skip("cannot mount a tmpfs here (needs root)")


@pytest.mark.skipif(sys.platform != "linux", reason="tmpfs is Linux's")
@pytest.mark.parametrize("mode", MODES)
def test_a_real_full_filesystem_stops_the_run(
    mode: str, httpserver: HTTPServer, tmp_path: Path
) -> None:
    codes = list(all_country_codes())
    serve_flags(httpserver, codes)
    small = tmp_path / "small"
    _mount_small_tmpfs(small)
    try:
        flags2 = installed("flags2")
        url = httpserver.url_for("/flags")
        args = [flags2, "download", "-a", "--mode", mode, "-s", url, "-d", str(small)]
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=60,
        )
        saved = {p.name: p.read_bytes() for p in small.iterdir()}
    finally:
        subprocess.run(["umount", str(small)], check=True, timeout=10)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("No space left on device") == 1, proc.stderr
    assert "cancelled." in proc.stdout
    assert saved, "the first flags fit in 64 KiB"
    assert all(name.endswith(".gif") for name in saved)  # no .part survives
    for name, body in saved.items():
        assert body == flag_bytes(name[:2])


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose listener never accepts: connects queue, then time out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield int(listener.getsockname()[1])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["never-accepts", "accepts-and-stays-silent"])
def test_a_server_that_never_answers_stops_the_run_early(
    mode: str,
    kind: str,
    unanswered_port: int,
    scripted: Script,
    dest: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if kind == "never-accepts":
        base_url = f"http://127.0.0.1:{unanswered_port}/flags"
    else:
        base_url = scripted([(30, b"")])  # reads the request, then nothing
    import flags2.servers.launch

    def no_probe(*args: object) -> bool:
        raise AssertionError("the hint must not connect again")

    monkeypatch.setattr(flags2.servers.launch, "is_listening", no_probe)
    codes = list(all_country_codes())
    settings = _settings(mode, base_url, dest, timeout=0.2)
    assert run(mode, codes, settings) == EXIT_ERRORS
    captured = capsys.readouterr()
    give_up = max(10, settings.concurrency)
    assert captured.err.splitlines() == [
        f"flags2: nothing answers at {base_url}: {give_up} requests in a row could"
        " not connect or timed out, so the run stops here; is the server running?"
    ]
    assert f"{give_up:3} errors." in captured.out
    assert f"{len(codes) - give_up:3} cancelled." in captured.out
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("mode", MODES)
def test_stale_temporaries_are_removed_when_a_run_starts(
    mode: str,
    httpserver: HTTPServer,
    dest: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    serve_flags(httpserver, ["BR"])
    stale = [".BR.gif.abcd1234.part", ".CN.gif.k_9x2q7z.part"]
    kept = ["notes.part", ".BR.gif.part", "CN.gif"]
    for name in stale + kept:
        (dest / name).write_bytes(b"GIF89a")
    settings = _settings(mode, httpserver.url_for("/flags"), dest)
    assert run(mode, ["BR"], settings) == EXIT_OK
    assert sorted(p.name for p in dest.iterdir()) == sorted([*kept, "BR.gif"])
    assert (dest / "BR.gif").read_bytes() == flag_bytes("BR")


@pytest.mark.parametrize("mode", ["sequential", "threadpool"])
def test_the_blocking_modes_never_import_asyncio(
    mode: str, httpserver: HTTPServer, tmp_path: Path
) -> None:
    # About 20 ms of start-up that neither blocking mode needs.
    serve_flags(httpserver, ["BR"])
    code = (
        "import sys; from pathlib import Path\n"
        "from flags2 import runner\n"
        "from flags2.settings import Settings\n"
        f"s = Settings(base_url={httpserver.url_for('/flags')!r}, site='CUSTOM',"
        f" dest=Path({str(tmp_path)!r}))\n"
        f"code = runner.run({mode!r}, ['BR'], s, serve=False)\n"
        "print(code, 'asyncio' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.split()[-2:] == ["0", "False"]
    assert (tmp_path / "BR.gif").exists()


@pytest.mark.parametrize(
    ("requested", "most", "n_codes", "expected"),
    [(30, 1000, 676, 30), (5000, 1000, 676, 676), (50, 1, 20, 1), (5, 1000, 2, 2)],
)
def test_effective_concurrency_is_capped_by_the_mode_and_the_flags(
    requested: int, most: int, n_codes: int, expected: int
) -> None:
    assert effective_concurrency(requested, most, n_codes) == expected


@pytest.mark.parametrize("mode", MODES)
def test_the_downloads_run_with_the_imports_frozen_out_of_the_collector(
    mode: str, httpserver: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Full collections during a run would walk every import's objects again
    # and again; they are frozen while the downloads run, thawed after.
    import gc

    from flags2 import runner

    serve_flags(httpserver, ["BR"])
    real = load_mode(mode)
    frozen: list[int] = []

    class Spy:
        DEFAULT_CONCUR_REQ = real.DEFAULT_CONCUR_REQ
        MAX_CONCUR_REQ = real.MAX_CONCUR_REQ

        @staticmethod
        def download_many(*args: Any) -> None:
            frozen.append(gc.get_freeze_count())
            real.download_many(*args)

    monkeypatch.setattr(runner, "load_mode", lambda name: Spy)
    settings = Settings(
        base_url=httpserver.url_for("/flags"), site="CUSTOM", dest=tmp_path
    )
    assert run(mode, ["BR"], settings, serve=False) == EXIT_OK
    assert frozen and frozen[0] > 10_000  # the imports: modules, classes, functions
    assert gc.get_freeze_count() == 0
    assert (tmp_path / "BR.gif").read_bytes() == flag_bytes("BR")
