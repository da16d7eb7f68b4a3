"""Asyncio mode: one event loop, `concurrency` requests in flight.

Named ``aio`` so it can never shadow the standard library's ``asyncio``; on the
command line the mode is still called ``asyncio``.

    $ flags2-asyncio -s DELAY -e -m 1000
    DELAY site: http://localhost:8001/flags
    Searching for 676 flags: from AA to ZZ
    676 concurrent connections will be used.
    --------------------
    194 flags downloaded.
    482 not found.
    Elapsed time: 5.12s
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from flags2.aioclients import AsyncClientPool
from flags2.fetch import download_one_async as download_one
from flags2.settings import Settings
from flags2.tracker import Tracker

__all__ = ["DEFAULT_CONCUR_REQ", "MAX_CONCUR_REQ", "download_many"]

DEFAULT_CONCUR_REQ = 5
MAX_CONCUR_REQ = 1000


async def supervisor(
    cc_list: Sequence[str], settings: Settings, tracker: Tracker
) -> None:
    async with AsyncClientPool(settings) as pool, asyncio.TaskGroup() as group:
        to_do = [
            group.create_task(download_one(pool, cc, settings, tracker))
            for cc in cc_list
        ]
        for coro in asyncio.as_completed(to_do):
            tracker.record(await coro)


def download_many(cc_list: Sequence[str], settings: Settings, tracker: Tracker) -> None:
    with tracker.running():
        try:
            asyncio.run(supervisor(cc_list, settings, tracker))
        except BaseExceptionGroup as group:
            # The TaskGroup wraps what the loop above raised (a closed stdout,
            # say); callers get the error itself, as from the other modes.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
