from __future__ import annotations

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
