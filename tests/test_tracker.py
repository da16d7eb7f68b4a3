from __future__ import annotations

import io
import sys
import threading
from concurrent import futures
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


@pytest.mark.timeout(30)
def test_thread_pool_does_not_wait_for_work_in_flight_on_ctrl_c() -> None:
    release = threading.Event()
    both_running = threading.Barrier(3)  # the two workers and this thread
    ran: list[int] = []

    def stuck(n: int) -> None:
        ran.append(n)
        if n < 2:
            both_running.wait(10)
            release.wait(10)

    try:
        with pytest.raises(KeyboardInterrupt), thread_pool(2) as executor:
            submitted = [executor.submit(stuck, n) for n in range(5)]
            both_running.wait(10)  # 0 and 1 hold both workers; 2, 3, 4 queued
            raise KeyboardInterrupt
        in_flight, queued = submitted[:2], submitted[2:]
        # Back here while both workers still wait for `release`: not waited for.
        assert not any(f.done() for f in in_flight)
        assert all(f.cancelled() for f in queued)
    finally:
        release.set()
    futures.wait(in_flight, timeout=10)
    executor.shutdown(wait=True)  # every worker is idle: nothing left to run
    assert sorted(ran) == [0, 1]  # the queued work was cancelled, never run


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
