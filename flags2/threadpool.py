"""Thread-pool mode: `concurrency` threads share the run's clients.

$ flags2-threadpool -s DELAY a b c
DELAY site: http://localhost:8001/flags
Searching for 78 flags: from AA to CZ
30 concurrent connections will be used.
--------------------
 43 flags downloaded.
 35 not found.
Elapsed time: 6.71s

With ``--map`` the results are taken as the book's Example 20-3 takes them,
from ``executor.map``: in submission order (the codes' order), not as they
complete. The downloads run just as concurrently, but one slow early flag
holds back the report of every later one, even those long done: with ``-v``
the lines come in code order, and the progress bar stalls and then jumps.
That hold-up is why the book moves flags2 to ``as_completed``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from concurrent import futures

from flags2.clients import ClientPool
from flags2.fetch import download_one
from flags2.settings import Settings
from flags2.threads import thread_pool
from flags2.tracker import Tracker

__all__ = ["DEFAULT_CONCUR_REQ", "MAX_CONCUR_REQ", "download_many"]

DEFAULT_CONCUR_REQ = 30
MAX_CONCUR_REQ = 1000


def download_many(cc_list: Sequence[str], settings: Settings, tracker: Tracker) -> None:
    with (
        tracker.running(),  # first: Ctrl-C while an https pool asks its server
        ClientPool(settings) as pool,
        thread_pool(settings.concurrency) as executor,
    ):
        if settings.executor_map:
            results = executor.map(
                download_one,
                itertools.repeat(pool),
                cc_list,
                itertools.repeat(settings),
                itertools.repeat(tracker),
            )
            for result in results:
                tracker.record(result)
            return
        to_do = [
            executor.submit(download_one, pool, cc, settings, tracker) for cc in cc_list
        ]
        for future in futures.as_completed(to_do):
            tracker.record(future.result())
