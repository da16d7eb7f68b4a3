from __future__ import annotations

import errno
import fcntl
import io
import os
import pty
import re
import struct
import sys
import termios
import threading
import time
from pathlib import Path

import httpx2 as httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flags2.settings import Settings
from flags2.status import DownloadStatus, FlagResult, describe_error
from flags2.tracker import MIN_GIVE_UP, Tracker
from tests.helpers import installed


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


def test_progress_bar_counts_skipped_flags_when_there_are_some(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    tracker = Tracker(["AA", "BB"], Settings(base_url="http://x", dest=dest))
    with tracker.running():
        tracker.record(FlagResult("AA", DownloadStatus.OK))
        tracker.record(FlagResult("BB", DownloadStatus.SKIPPED, file="BB.gif"))
    assert "OK=1 404=0 errors=0 skipped=1" in terminal.getvalue()


def test_a_stop_counts_a_flag_saved_under_its_country_name(dest: Path) -> None:
    settings = Settings(base_url="http://x", dest=dest, names=True)
    tracker = Tracker(["BR", "CN"], settings)
    with tracker.running():
        tracker.saver.save(b"GIF89a", "Brazil.gif", "BR")  # its result never came
        raise KeyboardInterrupt
    br = tracker.results["BR"]
    assert (br.status, br.file, br.bytes) == (DownloadStatus.OK, "Brazil.gif", 6)
    assert tracker.results["CN"].status is DownloadStatus.CANCELLED


def test_no_progress_bar_when_stderr_is_not_a_terminal(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    tracker = Tracker(["AA"], Settings(base_url="http://x", dest=dest))
    with tracker.running():
        tracker.record(FlagResult("AA", DownloadStatus.OK))
    assert pipe.getvalue() == ""


def _silent(cc: str) -> FlagResult:
    error = describe_error(httpx.ConnectTimeout("timed out"))
    return FlagResult(cc, DownloadStatus.ERROR, error=error)


def _codes(n: int) -> list[str]:
    return [a + b for a in "ABCDEFGHIJ" for b in "ABCDEFGHIJ"][:n]


@pytest.mark.parametrize("concurrency", [1, 10, 25])
def test_a_server_that_never_answers_stops_the_run(
    dest: Path, concurrency: int
) -> None:
    codes = _codes(60)
    settings = Settings(base_url="http://x/flags", dest=dest, concurrency=concurrency)
    tracker = Tracker(codes, settings)
    give_up = max(MIN_GIVE_UP, concurrency)
    assert tracker.give_up_after == give_up
    with tracker.running():
        for cc in codes:
            tracker.record(_silent(cc))
    assert tracker.unreachable and not tracker.interrupted
    assert tracker.stopped is not None
    assert tracker.stopped.startswith("nothing answers at http://x/flags:")
    assert tracker.counter[DownloadStatus.ERROR] == give_up
    assert tracker.counter[DownloadStatus.CANCELLED] == 60 - give_up
    assert tracker.saver.save(b"GIF89a", "ZZ.gif") is False


def test_one_answer_means_the_server_is_there(dest: Path) -> None:
    codes = _codes(40)
    tracker = Tracker(codes, Settings(base_url="http://x", dest=dest))
    with tracker.running():
        tracker.record(FlagResult(codes[0], DownloadStatus.NOT_FOUND, 404))
        for cc in codes[1:]:
            tracker.record(_silent(cc))
    assert tracker.stopped is None
    assert tracker.counter[DownloadStatus.ERROR] == 39


def test_other_errors_break_the_streak(dest: Path) -> None:
    codes = _codes(40)
    tracker = Tracker(codes, Settings(base_url="http://x", dest=dest))
    reset = describe_error(httpx.ReadError("connection reset"))
    with tracker.running():
        for i, cc in enumerate(codes):
            if i % 9 == 8:
                tracker.record(FlagResult(cc, DownloadStatus.ERROR, error=reset))
            else:
                tracker.record(_silent(cc))
    assert tracker.stopped is None


def test_a_fatal_write_error_stops_the_run_and_keeps_what_was_saved(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = Tracker(
        ["AA", "BB", "CC", "DD"], Settings(base_url="http://x", dest=dest)
    )
    with tracker.running():
        assert tracker.saver.save(b"GIF89a", "AA.gif")  # saved, not yet recorded
        tracker.saver.failed = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        tracker.saver.failed_file = "BB.gif"
        tracker.record(FlagResult("CC", DownloadStatus.CANCELLED, 200))
        raise AssertionError("record() should have stopped the run")  # pragma: no cover
    assert tracker.stopped == (
        f"cannot save flags in {str(dest)!r}: No space left on device;"
        " the run stops here"
    )
    statuses = {r.cc: r.status for r in tracker.ordered_results()}
    assert statuses == {
        "AA": DownloadStatus.OK,
        "BB": DownloadStatus.ERROR,
        "CC": DownloadStatus.CANCELLED,
        "DD": DownloadStatus.CANCELLED,
    }
    assert "No space left on device" in (tracker.results["BB"].error or "")


def test_errors_through_a_proxy_say_so(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://u:pw@proxy.invalid:3128")
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    tracker = Tracker(["AA", "BB"], Settings(base_url="http://x", dest=dest))
    with tracker.running():
        tracker.record(_silent("AA"))
        tracker.record(FlagResult("BB", DownloadStatus.NOT_FOUND, 404))
    assert (tracker.results["AA"].error or "").endswith(
        "(through proxy http://u:***@proxy.invalid:3128)"
    )
    assert tracker.results["BB"].error is None
    assert tracker.no_answers == 1


def _pty_terminal(cols: int) -> tuple[_Terminal, int, int]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))

    class Sized(_Terminal):
        def fileno(self) -> int:
            return slave

    return Sized(), master, slave


@pytest.mark.parametrize("cols", [40, 60, 80, 200])
def test_progress_bar_counts_stay_visible_at_any_width(
    dest: Path, monkeypatch: pytest.MonkeyPatch, cols: int
) -> None:
    terminal, master, slave = _pty_terminal(cols)
    try:
        monkeypatch.setattr(sys, "stderr", terminal)
        monkeypatch.setenv("TERM", "xterm")
        codes = _codes(100)
        tracker = Tracker(codes, Settings(base_url="http://x", dest=dest))
        with tracker.running():
            for cc in codes[:-1]:
                tracker.record(FlagResult(cc, DownloadStatus.OK, 200))
            tracker.record(FlagResult(codes[-1], DownloadStatus.NOT_FOUND, 404))
    finally:
        os.close(master)
        os.close(slave)
    lines = [s for s in re.split(r"[\r\n]", terminal.getvalue()) if s.strip()]
    assert lines
    # tqdm keeps one column free, and two more are left for an echoed ^C.
    assert all(len(line.rstrip()) <= cols - 3 for line in lines), lines
    assert lines[-1].startswith("100/100, OK=99 404=1 errors=0")


def test_progress_bar_rereads_the_width_at_every_redraw(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal, master, slave = _pty_terminal(120)
    try:
        monkeypatch.setattr(sys, "stderr", terminal)
        monkeypatch.setenv("TERM", "xterm")
        codes = _codes(100)
        tracker = Tracker(codes, Settings(base_url="http://x", dest=dest))
        with tracker.running():
            # Made with tqdm's documented options only: dynamic_ncols is a bool.
            assert isinstance(tracker._bar.dynamic_ncols, bool)
            for cc in codes[:50]:
                tracker.record(FlagResult(cc, DownloadStatus.OK, 200))
            wide = terminal.getvalue()
            winsize = struct.pack("HHHH", 24, 40, 0, 0)
            fcntl.ioctl(slave, termios.TIOCSWINSZ, winsize)  # the user narrows it
            for cc in codes[50:]:
                tracker.record(FlagResult(cc, DownloadStatus.OK, 200))
    finally:
        os.close(master)
        os.close(slave)
    before = [s for s in re.split(r"[\r\n]", wide) if s.strip()]
    after = [s for s in re.split(r"[\r\n]", terminal.getvalue()[len(wide) :]) if s]
    assert max(len(line) for line in before) == 120 - 3, before
    assert after and after[-1].startswith("100/100, OK=100"), after
    assert all(len(line.rstrip()) <= 40 - 3 for line in after), after


def test_no_animation_on_a_dumb_terminal(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setenv("TERM", "dumb")
    tracker = Tracker(["AA"], Settings(base_url="http://x", dest=dest))
    with tracker.running():
        tracker.record(FlagResult("AA", DownloadStatus.OK))
    assert terminal.getvalue() == ""


def test_ctrl_c_on_a_terminal_leaves_one_clean_bar_line(
    httpserver: HTTPServer, dest: Path
) -> None:
    # A real terminal (a pty 50 columns wide): its line discipline turns the
    # typed ^C into SIGINT and echoes "^C" after the bar.
    cols = 50
    release, answered = threading.Event(), threading.Event()

    def slow(request: Request) -> Response:
        if request.path.endswith("/ad/ad.gif"):
            answered.set()
        else:
            release.wait(20)
        return Response(status=404)

    httpserver.expect_request(re.compile("/flags/.*")).respond_with_handler(slow)
    flags2 = installed("flags2")
    args = [flags2, "download", "-e", "-m", "5", "--timeout", "30",
            "-s", httpserver.url_for("/flags"), "-d", str(dest)]  # fmt: skip
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
        os.execve(flags2, args, {**os.environ, "TERM": "xterm"})
    output = b""
    try:
        deadline = time.monotonic() + 15
        while b"0/676" not in output and time.monotonic() < deadline:
            output += os.read(master, 4096)
        assert answered.wait(10)
        time.sleep(0.3)  # AD's result is counted; tqdm draws it when it closes
        os.write(master, b"\x03")
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child is gone
                break
            if not chunk:
                break
            output += chunk
        _, status = os.waitpid(pid, 0)
    finally:
        release.set()
        os.close(master)
    text = output.decode()
    assert os.waitstatus_to_exitcode(status) == 130, text
    assert "Traceback" not in text
    bar, _, after = text.partition("^C")
    last_frame = re.split(r"[\r\n]", bar)[-1]
    # AD's 404 is drawn before the ^C when the bar's refresh interval has passed
    # since the first frame (a loaded machine starts slowly), else at the close.
    assert re.match(r"(0/676, OK=0 404=0|1/676, OK=0 404=1) errors=0 \|", last_frame), (
        text
    )
    assert len(last_frame) + len("^C") < cols  # the echo does not wrap
    # One redraw of that same line (\r first), then the report on the next one.
    redraw, newline, report = after.partition("\n")
    assert newline and report.lstrip("\r").startswith("-" * 20), text
    assert redraw.startswith("\r1/676, OK=0 404=1 errors=0 |"), text
    assert len(redraw.strip()) < cols
