"""Process-pool mode: the book's "just change these lines" experiment, runnable.

Chapter 20 says a ``ProcessPoolExecutor`` brings no advantage to an I/O-bound
job such as this one, and that processes cost more memory and start-up than
threads; this mode lets the bench show it. Each worker process runs the same
``download_one`` on clients of its own (see :mod:`flags2.processes` for the
worker initializer, Ctrl-C and shutdown); the parent records every result.
The default is the book's ``max_workers=None``: one worker per CPU. With
``--map`` results are taken from ``executor.map``, in code order, as in
:mod:`flags2.threadpool`.

    $ flags2-processpool -s DELAY -m 20 a b c
    DELAY site: http://localhost:8001/flags
    Searching for 78 flags: from AA to CZ
    20 concurrent connections will be used.
    --------------------
     43 flags downloaded.
     35 not found.
    Elapsed time: 13.31s

Timestamps taken in the workers (when a flag started and finished) are
``time.perf_counter`` readings, a clock shared by every process of the
machine, so they line up with the parent's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent import futures

from flags2.processes import download_flag, process_pool
from flags2.settings import Settings
from flags2.tracker import Tracker

__all__ = ["DEFAULT_CONCUR_REQ", "MAX_CONCUR_REQ", "download_many"]

# A worker is a whole interpreter (tens of MiB, a fraction of a second of CPU
# to start): 50 of them fit a 2-core machine, and Windows allows at most 61.
MAX_CONCUR_REQ = 50
DEFAULT_CONCUR_REQ = min(os.cpu_count() or 1, MAX_CONCUR_REQ)  # max_workers=None


def download_many(cc_list: Sequence[str], settings: Settings, tracker: Tracker) -> None:
    with tracker.running(), process_pool(settings, tracker) as executor:
        if settings.executor_map:  # the book's Example 20-3 form
            for result in executor.map(download_flag, cc_list):
                tracker.record(result)
            return
        to_do = [executor.submit(download_flag, cc) for cc in cc_list]
        for future in futures.as_completed(to_do):
            tracker.record(future.result())
