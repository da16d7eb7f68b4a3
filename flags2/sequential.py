"""Sequential mode: one flag after the other, on one connection.

$ flags2-sequential
LOCAL site: http://localhost:8000/flags
Searching for 20 flags: from BD to VN
1 connection will be used.
--------------------
 20 flags downloaded.
Elapsed time: 0.21s
"""

from __future__ import annotations

from collections.abc import Sequence

from flags2.clients import ClientPool
from flags2.fetch import download_one
from flags2.settings import Settings
from flags2.tracker import Tracker

__all__ = ["DEFAULT_CONCUR_REQ", "MAX_CONCUR_REQ", "download_many"]

DEFAULT_CONCUR_REQ = 1
MAX_CONCUR_REQ = 1


def download_many(cc_list: Sequence[str], settings: Settings, tracker: Tracker) -> None:
    # The clients inside the run: an https one first asks the server (ALPN),
    # and Ctrl-C then must cancel the flags and report, as at any other time.
    with tracker.running(), ClientPool(settings) as pool:
        for cc in cc_list:
            tracker.record(download_one(pool, cc, settings, tracker))
