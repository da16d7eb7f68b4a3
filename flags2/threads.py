"""The thread-pool mode's executor, which lets Ctrl-C through."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

__all__ = ["thread_pool"]


@contextmanager
def thread_pool(max_workers: int) -> Iterator[futures.ThreadPoolExecutor]:
    """A ThreadPoolExecutor that, on Ctrl-C, drops queued work and does not wait.

    ``with ThreadPoolExecutor()`` would wait for every download in flight,
    up to the timeout, before Ctrl-C could take effect.
    """
    executor = futures.ThreadPoolExecutor(max_workers=max_workers)
    try:
        yield executor
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
