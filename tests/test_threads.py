from __future__ import annotations

import threading
from concurrent import futures

import pytest

from flags2.threads import thread_pool


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
