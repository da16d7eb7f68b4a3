"""--names in every mode (the book's flags3): saved as the country's name."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from typer.testing import CliRunner

from flags2.cli import app
from flags2.codes import all_country_codes
from flags2.runner import load_mode
from flags2.save import Saver
from flags2.servers.testing import running
from flags2.settings import Settings
from flags2.status import DownloadStatus
from flags2.tracker import Tracker
from tests.helpers import (
    MODES,
    RunFn,
    flag_bytes,
    leftovers,
    real_metadata,
    requested,
    serve_flags,
    serve_metadata,
)

BOOK_NAMES = {
    "BR": "Brazil.gif",
    "US": "United_States_of_America.gif",
    "CI": "Côte_d'Ivoire.gif",
}


def serve_real(httpserver: HTTPServer, codes: list[str]) -> None:
    serve_flags(httpserver, codes)
    serve_metadata(httpserver, {cc: real_metadata(cc) for cc in codes})


def test_names_are_the_books_and_the_flags_are_byte_identical(
    httpserver: HTTPServer, run_mode: RunFn, dest: Path
) -> None:
    serve_real(httpserver, ["BR", "US", "CI"])
    tracker = run_mode(["BR", "US", "CI"], names=True)
    assert sorted(p.name for p in dest.iterdir()) == sorted(BOOK_NAMES.values())
    for cc, name in BOOK_NAMES.items():
        assert (dest / name).read_bytes() == flag_bytes(cc)
        result = tracker.results[cc]
        assert result.status is DownloadStatus.OK and result.file == name
        assert result.attempts == 2  # metadata.json, then the GIF
    assert sorted(requested(httpserver)) == sorted(
        f"/flags/{cc.lower()}/{f}" for cc in BOOK_NAMES for f in ("metadata.json",
        f"{cc.lower()}.gif")
    )  # fmt: skip


def test_names_with_skip_existing_ask_only_for_the_names(
    httpserver: HTTPServer, run_mode: RunFn, dest: Path
) -> None:
    serve_real(httpserver, ["BR", "US", "CI"])
    run_mode(["BR", "US", "CI"], names=True)
    httpserver.clear_log()
    tracker = run_mode(["BR", "US", "CI"], names=True, skip_existing=True)
    assert {r.status for r in tracker.results.values()} == {DownloadStatus.SKIPPED}
    assert sorted(requested(httpserver)) == [
        "/flags/br/metadata.json",
        "/flags/ci/metadata.json",
        "/flags/us/metadata.json",
    ]
    assert {r.file for r in tracker.results.values()} == set(BOOK_NAMES.values())


def test_no_metadata_is_not_found_if_the_flag_is_missing_too(
    httpserver: HTTPServer, run_mode: RunFn, dest: Path
) -> None:
    serve_flags(httpserver, ["BR"])  # a GIF without its metadata.json
    tracker = run_mode(["BR", "ZZ"], names=True)
    assert tracker.results["ZZ"].status is DownloadStatus.NOT_FOUND
    br = tracker.results["BR"]
    assert br.status is DownloadStatus.ERROR and br.error == "no metadata.json"
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "metadata.json is not JSON"),
        (b"\xff\xfe\xfa", "metadata.json is not JSON: it is not UTF-8"),
        (b'{"iso_cc": "BR"}', 'metadata.json has no "country" name'),
        (b'{"country": 7}', 'metadata.json has no "country" name'),
        (b'["Brazil"]', 'metadata.json has no "country" name'),
    ],
)
def test_bad_metadata_is_that_flags_error_and_nothing_is_written(
    httpserver: HTTPServer, run_mode: RunFn, dest: Path, body: bytes, problem: str
) -> None:
    serve_flags(httpserver, ["BR"])
    serve_metadata(httpserver, {"BR": body})
    br = run_mode(["BR"], names=True).results["BR"]
    assert br.status is DownloadStatus.ERROR and br.error == problem
    assert requested(httpserver) == ["/flags/br/metadata.json"]
    assert list(dest.iterdir()) == []


def test_a_metadata_request_is_retried_and_counted(
    httpserver: HTTPServer, run_mode: RunFn, dest: Path
) -> None:
    serve_flags(httpserver, ["BR"])
    httpserver.expect_ordered_request("/flags/br/metadata.json").respond_with_data(
        b"busy", status=503
    )
    serve_metadata(httpserver, {"BR": real_metadata("BR")})
    br = run_mode(["BR"], names=True, retries=2).results["BR"]
    assert br.status is DownloadStatus.OK and br.attempts == 3
    assert (dest / "Brazil.gif").read_bytes() == flag_bytes("BR")


def test_a_failed_metadata_request_says_so(
    httpserver: HTTPServer, run_mode: RunFn, dest: Path
) -> None:
    serve_flags(httpserver, ["BR"])
    httpserver.expect_request("/flags/br/metadata.json").respond_with_data(
        b"", status=418
    )
    br = run_mode(["BR"], names=True).results["BR"]
    assert br.status is DownloadStatus.ERROR and br.http_status == 418
    assert br.error == "metadata.json: HTTP error 418 - I'M A TEAPOT"
    assert list(dest.iterdir()) == []


HOSTILE = [
    "../../etc/x",
    "/abs",
    ".hidden",
    "a\\b",
    "nul\0byte",
    "\x1b[31mred",
    "..",
    ".",
    "x" * 240,
    "right\u202eto left",
    "line\nbreak",
    "   ",
]


def test_hostile_names_write_nothing_anywhere(
    httpserver: HTTPServer, mode: str, tmp_path: Path
) -> None:
    codes = sorted(all_country_codes())[: len(HOSTILE)]
    serve_flags(httpserver, codes)
    serve_metadata(httpserver, dict(zip(codes, HOSTILE, strict=True)))
    dest = tmp_path / "a" / "b" / "dest"  # ../../ stays inside tmp_path
    dest.mkdir(parents=True)
    module = load_mode(mode)
    settings = Settings(
        base_url=httpserver.url_for("/flags"), dest=dest, names=True,
        concurrency=min(module.MAX_CONCUR_REQ, 10), timeout=5.0,
    )  # fmt: skip
    tracker = Tracker(codes, settings)
    module.download_many(codes, settings, tracker)
    for cc in codes:
        result = tracker.results[cc]
        assert result.status is DownloadStatus.ERROR, result
        assert (result.error or "").startswith("unsafe country name"), result
        assert "\x1b" not in result.message and "\0" not in result.message
    written = [p for p in tmp_path.rglob("*") if not p.is_dir()]
    assert written == []
    assert not os.path.lexists("/abs.gif")
    # No GIF was even asked for: a bad name ends the flag first.
    assert all(path.endswith("metadata.json") for path in requested(httpserver))


def test_a_hostile_name_prints_one_clean_line(
    httpserver: HTTPServer, dest: Path
) -> None:
    serve_flags(httpserver, ["BR"])
    serve_metadata(httpserver, {"BR": "\x1b[2Jx"})
    result = CliRunner().invoke(
        app,
        ["download", "BR", "-v", "--names", "-d", str(dest),
         "-s", httpserver.url_for("/flags")],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "\x1b" not in result.output
    assert (
        "BR error: unsafe country name '\\x1b[2Jx': a control or invisible"
        " character (U+001B)" in result.output.splitlines()
    )
    assert list(dest.iterdir()) == []


def test_every_code_with_names_finds_the_books_194_flags(
    mode: str, tmp_path: Path
) -> None:
    with running("local") as server:
        port = server.server_address[1]
        module = load_mode(mode)
        settings = Settings(
            base_url=f"http://127.0.0.1:{port}/flags", dest=tmp_path, names=True,
            concurrency=min(module.MAX_CONCUR_REQ, 50),
        )  # fmt: skip
        codes = [a + b for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for b in
                 "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]  # fmt: skip
        tracker = Tracker(codes, settings)
        module.download_many(codes, settings, tracker)
    assert tracker.counter[DownloadStatus.OK] == 194
    assert tracker.counter[DownloadStatus.NOT_FOUND] == 482
    assert len(list(tmp_path.glob("*.gif"))) == 194
    assert leftovers(tmp_path) == []


def test_the_error_servers_faults_reach_metadata_too(tmp_path: Path) -> None:
    from flags2.servers.options import parse_faults

    with running("error", error_rate=1.0, faults=parse_faults("html")) as server:
        settings = Settings(
            base_url=f"http://127.0.0.1:{server.server_address[1]}/flags",
            dest=tmp_path, names=True,
        )  # fmt: skip
        tracker = Tracker(["BR"], settings)
        load_mode("sequential").download_many(["BR"], settings, tracker)
    br = tracker.results["BR"]
    assert br.status is DownloadStatus.ERROR
    assert br.error == "metadata.json is not JSON"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("names", "in_thread"), [(True, True), (False, False)])
def test_asyncio_saves_in_a_thread_as_flags3_does(
    httpserver: HTTPServer, dest: Path, monkeypatch: pytest.MonkeyPatch,
    names: bool, in_thread: bool,
) -> None:  # fmt: skip
    serve_real(httpserver, ["BR"])
    threads: list[bool] = []
    real_save = Saver.save

    def save(self: Saver, body: bytes, filename: str, cc: str | None = None) -> bool:
        threads.append(threading.current_thread() is not threading.main_thread())
        return real_save(self, body, filename, cc)

    monkeypatch.setattr(Saver, "save", save)
    settings = Settings(base_url=httpserver.url_for("/flags"), dest=dest, names=names)
    tracker = Tracker(["BR"], settings)
    load_mode("asyncio").download_many(["BR"], settings, tracker)
    assert tracker.results["BR"].status is DownloadStatus.OK
    assert threads == [in_thread]


# What Windows cannot hold, though Linux and macOS could: refused everywhere,
# so that a folder of flags means the same on every system.
WINDOWS_ONLY = [
    "a<b", "a>b", "a:b", 'a"b', "a|b", "a?b", "a*b", "Brazil.", "Brazil ",
    "CON", "prn", "Aux.txt", "nul.tar.gz", "COM1", "com9", "LPT1", "lpt9",
    "COM\xb9", "LPT\xb3", "CON .x",
]  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
def test_names_windows_cannot_hold_are_refused_in_every_mode(
    httpserver: HTTPServer, tmp_path: Path, mode: str
) -> None:
    codes = sorted(all_country_codes())[: len(WINDOWS_ONLY)]
    serve_flags(httpserver, [*codes, "CN"])
    serve_metadata(
        httpserver,
        {**dict(zip(codes, WINDOWS_ONLY, strict=True)), "CN": real_metadata("CN")},
    )
    dest = tmp_path / "dest"
    result = CliRunner().invoke(
        app,
        ["download", *codes, "CN", "-v", "--names", "--mode", mode, "-d", str(dest),
         "-s", httpserver.url_for("/flags"), "--json", str(tmp_path / "run.json")],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    for cc in codes:
        line = next(s for s in result.output.splitlines() if s.startswith(cc + " "))
        assert line.startswith(f"{cc} error: unsafe country name"), line
    assert "CN OK" in result.output.splitlines()
    written = [p for p in tmp_path.rglob("*") if not p.is_dir()]
    assert sorted(p.name for p in written) == ["China.gif", "run.json"]
    # No GIF was asked for but China's: a bad name ends the flag first.
    assert [p for p in requested(httpserver) if p.endswith(".gif")] == [
        "/flags/cn/cn.gif"
    ]
