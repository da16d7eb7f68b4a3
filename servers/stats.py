"""Thread-safe counters behind ``GET /_stats``.

Handler threads report each response's status (or ``"reset"``), each injected
fault and when a request starts and ends; `Stats.snapshot` turns that into the
JSON-ready dict the ``/_stats`` endpoint answers::

    $ curl -s http://127.0.0.1:8001/_stats
    {"server": "delay", "seed": 7, "requests": {"200": 194, "404": 482},
     "faults": {}, "peak_in_flight": 671, "in_flight": 0, "connections": 676,
     "cpu_seconds": 1.52}
"""

from __future__ import annotations

import threading
import time
from collections import Counter

__all__ = ["Stats"]


class Stats:
    """Counters for one server; every method may be called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._in_flight = 0
        self._peak_in_flight = 0
        self._connections = 0

    def count_response(self, status: int | str) -> None:
        """Count one response by status code, or ``"reset"`` for a reset."""
        with self._lock:
            self._requests[str(status)] += 1

    def count_fault(self, kind: str) -> None:
        """Count one injected fault (at injection, before the client sees it)."""
        with self._lock:
            self._faults[kind] += 1

    def count_connection(self) -> None:
        """Count one accepted TCP connection (keep-alive makes this < requests)."""
        with self._lock:
            self._connections += 1

    def begin(self) -> None:
        """Mark a request as in progress (its delay included)."""
        with self._lock:
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)

    def end(self) -> None:
        """Mark a request begun with `begin` as done."""
        with self._lock:
            self._in_flight -= 1

    def snapshot(self) -> dict[str, object]:
        """Return a consistent copy of every counter, ready for `json.dumps`."""
        with self._lock:
            return {
                "requests": dict(sorted(self._requests.items())),
                "faults": dict(sorted(self._faults.items())),
                "peak_in_flight": self._peak_in_flight,
                "in_flight": self._in_flight,
                "connections": self._connections,
                # The whole process's, so a client can tell what serving cost.
                "cpu_seconds": time.process_time(),
            }
