"""Handler threads are kept for the next connection, end when idle, lose no job."""

from __future__ import annotations

import _thread
import threading
import time
from typing import Any

import pytest

from flags2.servers import server as server_module
from flags2.servers.server import _Handlers
from flags2.servers.testing import ServerFactory, raw_request


def _wait_for(condition: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


@pytest.fixture
def starts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the threads the handlers start."""
    started: list[int] = []
    real = _thread.start_new_thread

    def counted(function: Any, args: Any) -> int:
        started.append(1)
        return int(real(function, args))

    monkeypatch.setattr(server_module, "start_new_thread", counted)
    return started


def test_a_finished_thread_serves_the_next_connection(starts: list[int]) -> None:
    handlers = _Handlers(idle=5.0)
    seen: list[int] = []

    def work(request: Any, address: Any) -> None:
        seen.append(threading.get_ident())

    handlers.run(work, None, None)
    _wait_for(lambda: handlers.waiting == 1)
    handlers.run(work, None, None)
    _wait_for(lambda: len(seen) == 2 and handlers.waiting == 1)
    assert seen[0] == seen[1]
    assert len(starts) == 1


def test_an_idle_thread_ends_after_its_wait(starts: list[int]) -> None:
    handlers = _Handlers(idle=0.05)
    handlers.run(lambda request, address: None, None, None)
    _wait_for(lambda: handlers.waiting == 1)
    _wait_for(lambda: handlers.waiting == 0)
    done = threading.Event()
    handlers.run(lambda request, address: done.set(), None, None)
    assert done.wait(5)
    assert len(starts) == 2  # the first thread had ended: a new one started


def test_busy_threads_mean_new_ones_and_no_job_is_lost(starts: list[int]) -> None:
    handlers = _Handlers(idle=5.0)
    release = threading.Event()
    served: list[object] = []
    lock = threading.Lock()

    def work(request: Any, address: Any) -> None:
        release.wait(5)
        with lock:
            served.append(request)

    for n in range(50):
        handlers.run(work, n, None)
    assert len(starts) == 50  # none was free: each connection got a thread
    release.set()
    _wait_for(lambda: handlers.waiting == 50)
    for n in range(50, 100):
        handlers.run(work, n, None)
    _wait_for(lambda: len(served) == 100)
    assert sorted(served) == list(range(100))  # type: ignore[type-var]
    assert len(starts) == 50  # the second 50 reused the first 50 threads


def test_jobs_racing_idle_threads_that_end_are_all_served() -> None:
    # Threads that wait 1 ms end all the time while jobs arrive: a job claimed
    # by a thread whose wait ran out must still be served.
    handlers = _Handlers(idle=0.001)
    served = threading.Semaphore(0)
    total = 0
    for wave in range(40):
        for _ in range(wave % 7 + 1):
            handlers.run(lambda request, address: served.release(), None, None)
            total += 1
        time.sleep(0.0005 * (wave % 4))
    for _ in range(total):
        assert served.acquire(timeout=5), "a job was never served"


def test_a_server_serves_one_client_after_another_on_kept_threads(
    start_server: ServerFactory, starts: list[int]
) -> None:
    server = start_server("local")
    for _ in range(20):
        response = raw_request(server.port, "/flags/br/br.gif")
        assert response.status == 200 and response.body.startswith(b"GIF")
        # The next connection comes once this one's thread is waiting again.
        _wait_for(lambda: server._handlers.waiting >= 1)
    assert len(starts) <= 2
