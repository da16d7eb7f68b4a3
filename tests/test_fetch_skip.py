"""--skip-existing in every mode: whole flags kept unasked, cut ones replaced."""

from __future__ import annotations

import os
from pathlib import Path

from pytest_httpserver import HTTPServer

from flags2.report import run_record
from flags2.status import DownloadStatus
from tests.helpers import RunFn, flag_bytes, leftovers, requested, serve_flags

OLD = 1_000_000_000_000_000_000  # an mtime in 2001, in ns: no run could set it


def test_skip_existing_keeps_whole_flags_and_replaces_cut_ones(
    httpserver: HTTPServer, run_mode: RunFn, dest: Path, mode: str
) -> None:
    serve_flags(httpserver, ["BR", "CN", "IN"])
    br, cn = dest / "BR.gif", dest / "CN.gif"
    br.write_bytes(flag_bytes("BR"))
    os.utime(br, ns=(OLD, OLD))
    cn.write_bytes(flag_bytes("CN")[:-20])  # cut short: not a whole GIF
    tracker = run_mode(["BR", "CN", "IN"], skip_existing=True)
    record = run_record(tracker, mode)
    assert [(f["cc"], f["status"]) for f in record["flags"]] == [
        ("BR", "SKIPPED"),
        ("CN", "OK"),
        ("IN", "OK"),
    ]
    assert record["counts"]["SKIPPED"] == 1 and record["counts"]["OK"] == 2
    assert [f["file"] for f in record["flags"]] == ["BR.gif", "CN.gif", "IN.gif"]
    assert sorted(requested(httpserver)) == ["/flags/cn/cn.gif", "/flags/in/in.gif"]
    assert br.stat().st_mtime_ns == OLD
    assert br.read_bytes() == flag_bytes("BR")
    assert cn.read_bytes() == flag_bytes("CN")
    assert (dest / "IN.gif").read_bytes() == flag_bytes("IN")
    skipped = tracker.results["BR"]
    assert skipped.attempts == 0 and skipped.bytes == len(flag_bytes("BR"))
    assert skipped.message == "skipped: BR.gif is already saved"
    assert leftovers(dest) == []


def test_a_folder_in_a_flags_place_is_its_error_and_never_requested(
    httpserver: HTTPServer, run_mode: RunFn, dest: Path
) -> None:
    serve_flags(httpserver, ["BR", "CN"])
    (dest / "BR.gif").mkdir()
    tracker = run_mode(["BR", "CN"], skip_existing=True)
    br = tracker.results["BR"]
    assert br.status is DownloadStatus.ERROR
    assert br.error == "BR.gif exists and is a folder, not a file"
    assert tracker.results["CN"].status is DownloadStatus.OK
    assert requested(httpserver) == ["/flags/cn/cn.gif"]
    assert (dest / "BR.gif").is_dir()


def test_a_fifo_in_a_flags_place_is_its_error_without_waiting(
    httpserver: HTTPServer, run_mode: RunFn, dest: Path
) -> None:
    serve_flags(httpserver, ["BR"])
    os.mkfifo(dest / "BR.gif")
    br = run_mode(["BR"], skip_existing=True).results["BR"]
    assert br.status is DownloadStatus.ERROR
    assert br.error == "BR.gif exists and is a fifo, not a file"
    assert requested(httpserver) == []


def test_without_the_option_every_flag_is_fetched_again(
    httpserver: HTTPServer, run_mode: RunFn, dest: Path
) -> None:
    serve_flags(httpserver, ["BR"])
    br = dest / "BR.gif"
    br.write_bytes(flag_bytes("BR"))
    os.utime(br, ns=(OLD, OLD))
    tracker = run_mode(["BR"])
    assert tracker.results["BR"].status is DownloadStatus.OK
    assert requested(httpserver) == ["/flags/br/br.gif"]
    assert br.stat().st_mtime_ns != OLD  # the book's behaviour: saved anew


def test_a_not_found_flag_is_still_asked_for(
    httpserver: HTTPServer, run_mode: RunFn
) -> None:
    tracker = run_mode(["ZZ"], skip_existing=True)
    assert tracker.results["ZZ"].status is DownloadStatus.NOT_FOUND
    assert requested(httpserver) == ["/flags/zz/zz.gif"]
