from __future__ import annotations

import io
import sys
import threading
from pathlib import Path

import pytest

from flags2.settings import Settings
from flags2.status import DownloadStatus, FlagResult
from flags2.tracker import Tracker, thread_pool


def test_interrupt_cancels_every_flag_without_a_result(dest: Path) -> None:
    tracker = Tracker(["AA", "BB", "CC"], Settings(base_url="http://x", dest=dest))
    with tracker.running():
        tracker.record(FlagResult("AA", DownloadStatus.OK))
        raise KeyboardInterrupt
    assert tracker.interrupted
    assert [r.status for r in tracker.ordered_results()] == [
        DownloadStatus.OK,
        DownloadStatus.CANCELLED,
        DownloadStatus.CANCELLED,
    ]
    assert tracker.counter[DownloadStatus.CANCELLED] == 2
    assert tracker.saver.save(b"GIF89a", "BB.gif") is False  # no writes after Ctrl-C


def test_verbose_prints_the_books_lines(
    dest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tracker = Tracker(["ZZ"], Settings(base_url="http://x", dest=dest, verbose=True))
    with tracker.running():
        tracker.record(
            FlagResult("ZZ", DownloadStatus.NOT_FOUND, url="http://x/zz/zz.gif")
        )
    assert capsys.readouterr().out == "ZZ not found: http://x/zz/zz.gif\n"


def test_thread_pool_does_not_wait_for_work_in_flight_on_ctrl_c() -> None:
    release = threading.Event()
    started = threading.Event()

    def stuck() -> None:
        started.set()
        release.wait(10)

    try:
        try:
            with thread_pool(2) as executor:
                executor.submit(stuck)
                queued = executor.submit(stuck)
                executor.submit(stuck)
                started.wait(5)
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            pass
        assert not release.is_set()  # we got here while work was still running
        assert queued.cancelled() or queued.running()
    finally:
        release.set()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_counts_every_outcome(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    tracker = Tracker(["AA", "BB", "CC"], Settings(base_url="http://x", dest=dest))
    with tracker.running():
        tracker.record(FlagResult("AA", DownloadStatus.OK))
        tracker.record(FlagResult("BB", DownloadStatus.NOT_FOUND))
        tracker.record(FlagResult("CC", DownloadStatus.ERROR, error="boom"))
    drawn = terminal.getvalue()
    assert "3/3" in drawn
    assert "OK=1 404=1 errors=1" in drawn


def test_no_progress_bar_when_stderr_is_not_a_terminal(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    tracker = Tracker(["AA"], Settings(base_url="http://x", dest=dest))
    with tracker.running():
        tracker.record(FlagResult("AA", DownloadStatus.OK))
    assert pipe.getvalue() == ""
