"""What a run prints, in the book's shape, and its ``--json`` record.

LOCAL site: http://localhost:8000/flags
Searching for 78 flags: from AA to CZ
30 concurrent connections will be used.
--------------------
 43 flags downloaded.
 35 not found.
Elapsed time: 0.31s
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flags2.settings import Settings
from flags2.status import DownloadStatus
from flags2.tracker import Tracker
from flags2.urls import redact

__all__ = ["final_report", "initial_report", "protocol_line", "run_record"]


def initial_report(cc_list: Sequence[str], settings: Settings) -> None:
    if len(cc_list) <= 10:
        cc_msg = ", ".join(cc_list)
    else:
        cc_msg = f"from {cc_list[0]} to {cc_list[-1]}"
    print(f"{settings.site} site: {redact(settings.base_url)}")
    plural = "s" if len(cc_list) != 1 else ""
    print(f"Searching for {len(cc_list)} flag{plural}: {cc_msg}")
    if settings.concurrency == 1:
        print("1 connection will be used.")
    else:
        print(f"{settings.concurrency} concurrent connections will be used.")
    if settings.rate is not None:
        print(f"At most {settings.rate.describe()} will be started.")


def final_report(tracker: Tracker) -> None:
    counter = tracker.counter
    print("-" * 20)
    ok = counter[DownloadStatus.OK]
    print(f"{ok:3} flag{'s' if ok != 1 else ''} downloaded.")
    if skipped := counter[DownloadStatus.SKIPPED]:
        print(f"{skipped:3} flag{'s' if skipped != 1 else ''} skipped (already saved).")
    if counter[DownloadStatus.NOT_FOUND]:
        print(f"{counter[DownloadStatus.NOT_FOUND]:3} not found.")
    if errors := counter[DownloadStatus.ERROR]:
        print(f"{errors:3} error{'s' if errors != 1 else ''}.")
    if counter[DownloadStatus.CANCELLED]:
        print(f"{counter[DownloadStatus.CANCELLED]:3} cancelled.")
    if protocols := protocol_line(tracker):
        print(protocols)
    print(f"Elapsed time: {tracker.elapsed:.2f}s")


def protocol_line(tracker: Tracker) -> str:
    """``HTTP/2 over 1 connection.``: what the answers came over, when known.

    Said when httpx's transport carried the run (https, a proxy): the lean
    plain-http transport does not say which connection an answer came on.
    """
    n = len(tracker.connections)
    if not n or not tracker.http_versions:
        return ""
    versions = " and ".join(sorted(tracker.http_versions))
    return f"{versions} over {n} connection{'s' if n != 1 else ''}."


def run_record(tracker: Tracker, mode: str) -> dict[str, Any]:
    """The ``--json`` object: the run, its counts, and one record per code."""
    settings, t0, consumed = tracker.settings, tracker.t0, tracker.consumed
    return {
        "mode": mode,
        "server": settings.site,
        "base_url": redact(settings.base_url),
        "concurrency": settings.concurrency,
        # What protocol_line says: the connections answers came on, or None
        # where the transport does not tell (the lean plain-http one).
        "connections": len(tracker.connections) or None,
        "elapsed": round(tracker.elapsed, 6),
        "counts": {status.name: tracker.counter[status] for status in DownloadStatus},
        "flags": [
            {
                "cc": r.cc,
                "status": r.status.name,
                "http_status": r.http_status,
                "bytes": r.bytes,
                "attempts": r.attempts,
                "started": round(max(0.0, r.started - t0), 6),
                "finished": round(max(0.0, r.finished - t0), 6),
                "consumed": round(max(0.0, consumed.get(r.cc, r.finished) - t0), 6),
                "error": r.error,
                "file": r.file,
                "http_version": r.http_version,
                "final_url": redact(r.final_url) if r.final_url else None,
            }
            for r in tracker.ordered_results()
        ],
        **({"pool": tracker.pool_stats} if tracker.pool_stats else {}),
    }
