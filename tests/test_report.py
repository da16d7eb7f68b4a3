from __future__ import annotations

from pathlib import Path

import pytest

from flags2.report import final_report, initial_report, run_record
from flags2.settings import Settings
from flags2.status import DownloadStatus, FlagResult
from flags2.tracker import Tracker


def test_initial_report_lists_few_codes(capsys: pytest.CaptureFixture[str]) -> None:
    initial_report(["BR", "CN"], Settings(base_url="http://h/flags", site="LOCAL"))
    assert capsys.readouterr().out.splitlines() == [
        "LOCAL site: http://h/flags",
        "Searching for 2 flags: BR, CN",
        "1 connection will be used.",
    ]


def test_initial_report_gives_the_range_of_many(
    capsys: pytest.CaptureFixture[str],
) -> None:
    codes = [a + b for a in "ABC" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    initial_report(codes, Settings(base_url="http://h/flags", concurrency=30))
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == ["Searching for 78 flags: from AA to CZ",
                         "30 concurrent connections will be used."]  # fmt: skip


def test_final_report_in_the_books_shape(
    dest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outcomes = [DownloadStatus.OK] * 43 + [DownloadStatus.NOT_FOUND] * 35
    outcomes += [DownloadStatus.ERROR] * 27
    codes = [f"{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(len(outcomes) + 2)]
    tracker = Tracker(codes, Settings(base_url="http://h", dest=dest))
    with tracker.running():
        for cc, status in zip(codes, outcomes, strict=False):
            tracker.record(FlagResult(cc, status))
        raise KeyboardInterrupt  # the last two are cancelled
    tracker.elapsed = 1.724
    final_report(tracker)
    assert capsys.readouterr().out.splitlines() == [
        "-" * 20,
        " 43 flags downloaded.",
        " 35 not found.",
        " 27 errors.",
        "  2 cancelled.",
        "Elapsed time: 1.72s",
    ]


def test_final_report_omits_empty_lines_and_plurals(
    dest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tracker = Tracker(["BR"], Settings(base_url="http://h", dest=dest))
    with tracker.running():
        tracker.record(FlagResult("BR", DownloadStatus.OK))
    final_report(tracker)
    assert capsys.readouterr().out.splitlines()[:2] == [
        "-" * 20,
        "  1 flag downloaded.",
    ]


def test_run_record_counts_the_connections_answers_came_on(dest: Path) -> None:
    first, second = object(), object()  # stand-ins for httpcore's streams
    tracker = Tracker(["BR", "CN", "DE"], Settings(base_url="https://h", dest=dest))
    with tracker.running():
        for cc, streams in [("BR", (first,)), ("CN", (first,)), ("DE", (second,))]:
            tracker.record(FlagResult(cc, DownloadStatus.OK, connections=streams))
    assert run_record(tracker, "asyncio")["connections"] == 2


def test_run_record_has_no_connections_where_the_transport_does_not_tell(
    dest: Path,
) -> None:
    tracker = Tracker(["BR"], Settings(base_url="http://h", dest=dest))
    with tracker.running():
        tracker.record(FlagResult("BR", DownloadStatus.OK))
    assert run_record(tracker, "asyncio")["connections"] is None
