"""The process-pool mode end to end under each start method; ``--map`` in both pools.

Runs ``python -m flags2`` as a process: a pool's workers, their start method
and their signals only exist in a real process tree. Which processes a run
left behind is read from ``/proc`` (Linux only; elsewhere those tests skip).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing import get_all_start_methods
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flags2.codes import all_country_codes
from flags2.processes import START_METHOD_ENV
from tests.helpers import flag_bytes, installed, leftovers
from tests.test_interrupt import SAVE_SECONDS, SLOW_DISK

# forkserver is Linux's default from Python 3.14 on (where the platform has it).
METHODS = [m for m in ("fork", "spawn", "forkserver") if m in get_all_start_methods()]
PROC = Path("/proc")
needs_proc = pytest.mark.skipif(not PROC.is_dir(), reason="reads /proc (Linux)")


@pytest.fixture(scope="module")
def local_url() -> Iterator[str]:
    """The bundled LOCAL server on a free port: 194 flags, 404 for the rest."""
    from flags2.servers.launch import background

    with background(["local"]) as running:
        yield running.urls["local"]


def _platform_env() -> dict[str, str]:
    """The environment without the suite's FLAGS2_START_METHOD (conftest)."""
    return {k: v for k, v in os.environ.items() if k != START_METHOD_ENV}


def _download(
    args: list[str],
    method: str | None = None,
    command: list[str] | None = None,
    *,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ if env is None else env)
    if method is not None:
        env[START_METHOD_ENV] = method
    base = command or [sys.executable, "-m", "flags2", "download"]
    return subprocess.run(
        [*base, "--no-serve", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _counts(dest: Path) -> dict[str, int]:
    record = json.loads((dest.parent / "run.json").read_text())
    counts: dict[str, int] = record["counts"]
    return counts


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("form", ["as_completed", "map"])
def test_every_code_gives_194_flags_and_482_not_found(
    method: str, form: str, local_url: str, dest: Path
) -> None:
    extra = ["--map"] if form == "map" else []
    done = _download(
        ["--mode", "processpool", "-e", "-m", "6", "-s", local_url, "-d", str(dest),
         "--json", str(dest.parent / "run.json"), *extra],
        method,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    counts = _counts(dest)
    assert (counts["OK"], counts["NOT_FOUND"], counts["ERROR"]) == (194, 482, 0)
    assert len(list(dest.iterdir())) == 194


def test_a_run_with_one_thread_forks_and_says_nothing(
    local_url: str, dest: Path
) -> None:
    """No bundled server, no probe: the run has one thread, and fork is safe."""
    default = get_all_start_methods()[0]
    done = _download(
        ["--mode", "processpool", "-l", "5", "-m", "2", "-s", local_url,
         "-d", str(dest), "--json", str(dest.parent / "run.json")],
        command=[sys.executable, "-W", "default", "-m", "flags2", "download"],
        env=_platform_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads((dest.parent / "run.json").read_text())
    assert record["pool"]["start_method"] == default
    assert "fork()" not in done.stderr  # 3.12's warning of a threaded fork
    assert len(list(dest.iterdir())) == 5


CHOOSE = """
import _thread, multiprocessing as mp, threading, time
from flags2.processes import start_context
mp.get_context().Lock()  # fixes multiprocessing's own default: no matter
alone = start_context().get_start_method()
left = threading.Event()
threading.Thread(target=left.wait).start()
threaded = start_context().get_start_method()
left.set()
time.sleep(0.2)  # that thread has ended
# A thread threading never saw, as the bundled servers' handler threads are.
raw = threading.Lock()
raw.acquire()
_thread.start_new_thread(raw.acquire, ())
time.sleep(0.2)
print(alone, threaded, start_context().get_start_method())
"""


@pytest.mark.skipif(
    get_all_start_methods()[0] != "fork", reason="fork is not the default here"
)
def test_a_process_with_threads_is_never_forked() -> None:
    chosen = subprocess.run(
        [sys.executable, "-c", CHOOSE], capture_output=True, text=True,
        env=_platform_env(), timeout=60,
    )  # fmt: skip
    assert chosen.stdout.split() == ["fork", "forkserver", "forkserver"], chosen.stderr


@pytest.mark.parametrize("method", METHODS)
def test_the_environment_chooses_the_start_method(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flags2.processes import start_context

    monkeypatch.setenv(START_METHOD_ENV, method)
    assert start_context().get_start_method() == method


def test_threadpool_map_gives_the_same_counts(local_url: str, dest: Path) -> None:
    done = _download(
        ["--mode", "threadpool", "--map", "-e", "-m", "30", "-s", local_url,
         "-d", str(dest), "--json", str(dest.parent / "run.json")],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    counts = _counts(dest)
    assert (counts["OK"], counts["NOT_FOUND"], counts["ERROR"]) == (194, 482, 0)


def test_the_processpool_script_gets_all_194_flags(local_url: str, dest: Path) -> None:
    script = installed("flags2-processpool")
    done = _download(["-a", "-s", local_url, "-d", str(dest)], command=[script])
    assert done.returncode == 0, done.stderr
    assert "194 flags downloaded." in done.stdout
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        f"{cc}.gif" for cc in all_country_codes()
    )
    for path in dest.iterdir():
        assert path.read_bytes() == flag_bytes(path.name[:2])


def test_map_is_refused_in_the_other_modes(dest: Path) -> None:
    done = _download(["--mode", "asyncio", "--map", "-d", str(dest)])
    assert done.returncode == 2
    assert "--map is for the threadpool and processpool modes" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("mode", ["threadpool", "processpool"])
@pytest.mark.parametrize("form", ["as_completed", "map"])
def test_verbose_map_prints_in_code_order(
    mode: str, form: str, httpserver: HTTPServer, dest: Path
) -> None:
    """The first code is slow: only --map holds every later line back for it."""
    codes = ["BR", "CN", "IN", "US"]

    def answer(request: Request) -> Response:
        cc = request.path.split("/")[2].upper()
        if cc == codes[0]:
            time.sleep(1.0)
        return Response(flag_bytes(cc), content_type="image/gif")

    httpserver.expect_request(re.compile("/flags/.*")).respond_with_handler(answer)
    extra = ["--map"] if form == "map" else []
    done = _download(
        ["--mode", mode, "-v", "-m", "4", "-s", httpserver.url_for("/flags"),
         "-d", str(dest), *extra, *codes],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = [line.split()[0] for line in done.stdout.splitlines() if " OK" in line]
    assert sorted(printed) == codes
    if form == "map":
        assert printed == codes
    else:  # as completed: the slow first flag comes last
        assert printed[-1] == codes[0]


# -- signals and orphans -----------------------------------------------------------


class _Hold:
    """Answers AA with a flag at once and holds every other request until released."""

    def __init__(self) -> None:
        self.arrived = 0
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        with self.lock:
            self.arrived += 1
        if not request.path.startswith("/flags/aa/"):
            self.release.wait(30)
            return Response(b"", status=404)
        return Response(flag_bytes("BR"), content_type="image/gif")


def _children(pid: int) -> set[int]:
    """Every live process descended from `pid`, from /proc."""
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":  # a zombie has ended
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    live = set()
    for pid in pids:
        try:
            state = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            live.add(pid)
    return live


def _start_held(
    httpserver: HTTPServer, dest: Path, method: str, *, slow_disk: bool = False
) -> tuple[subprocess.Popen[str], _Hold]:
    hold = _Hold()
    httpserver.expect_request(re.compile("/flags/.*")).respond_with_handler(hold)
    env = {**os.environ, START_METHOD_ENV: method}
    codes = [f"A{c}" for c in "ABCDEFGHIJK"]
    python = [sys.executable, "-c", SLOW_DISK] if slow_disk else [
        sys.executable, "-m", "flags2"]  # fmt: skip
    proc = subprocess.Popen(
        [*python, "download", "--mode", "processpool",
         "-m", "4", "-s", httpserver.url_for("/flags"), "-d", str(dest), *codes],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,  # its own process group, as a terminal's job
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while hold.arrived < (4 if slow_disk else 5):  # AA, then 4 held
        # (on the slow disk, AA's worker is still saving it: 3 held)
        assert time.monotonic() < deadline, "the workers never reached the server"
        time.sleep(0.02)
    return proc, hold


@needs_proc
@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("how", ["ctrl-c-to-group", "sigterm-to-parent"])
def test_a_signal_stops_the_run_and_every_worker(
    method: str, how: str, httpserver: HTTPServer, dest: Path
) -> None:
    proc, hold = _start_held(httpserver, dest, method)
    try:
        workers = _children(proc.pid)
        assert len(workers) >= 4, workers
        if how == "ctrl-c-to-group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=10)
        stopped_after = time.monotonic() - sent
    finally:
        hold.release.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == (130 if how == "ctrl-c-to-group" else 143), err
    assert stopped_after < 2.0
    assert "Traceback" not in err, err
    assert "cancelled." in out
    assert leftovers(dest) == []
    assert "  1 flag downloaded." in out  # AA, saved, is never lost
    assert (dest / "AA.gif").read_bytes() == flag_bytes("BR")
    time.sleep(3.0)
    assert _alive(workers) == set()


@needs_proc
@pytest.mark.timeout(60)
def test_ctrl_c_to_the_group_lets_a_save_in_progress_finish(
    httpserver: HTTPServer, dest: Path
) -> None:
    """Workers ignore Ctrl-C: the parent's stop waits for AA's save, keeps it."""
    # fork: the slow disk (an audit hook in the parent) is inherited.
    proc, hold = _start_held(httpserver, dest, "fork", slow_disk=True)
    try:
        deadline = time.monotonic() + 10
        while not leftovers(dest):  # AA's temporary: its save has begun
            assert time.monotonic() < deadline, "AA's save never began"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=SAVE_SECONDS + 5)
    finally:
        hold.release.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert leftovers(dest) == []
    assert (dest / "AA.gif").read_bytes() == flag_bytes("BR")
    assert "  1 flag downloaded." in out


@needs_proc
@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_no_worker_outlives_a_killed_parent(
    method: str, httpserver: HTTPServer, dest: Path
) -> None:
    proc, hold = _start_held(httpserver, dest, method)
    try:
        workers = _children(proc.pid)
        assert len(workers) >= 4, workers
        proc.kill()  # kill -9: no handler, no cleanup in the parent
        proc.communicate(timeout=10)
        time.sleep(3.0)
        assert _alive(workers) == set()
    finally:
        hold.release.set()
    assert leftovers(dest) == []


@needs_proc
@pytest.mark.timeout(60)
def test_a_killed_worker_stops_the_run_with_one_message(
    httpserver: HTTPServer, dest: Path
) -> None:
    proc, hold = _start_held(httpserver, dest, "fork")
    try:
        workers = _children(proc.pid)
        os.kill(min(workers), signal.SIGKILL)  # as the OOM killer would
        out, err = proc.communicate(timeout=15)
    finally:
        hold.release.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    assert "flags2: a worker process died" in err
    assert "  1 flag downloaded." in out  # AA, saved before, is kept
    assert leftovers(dest) == []
    time.sleep(1.0)
    assert _alive(workers) == set()
