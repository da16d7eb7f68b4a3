"""The settings of one download run, and the servers the book names.

Everything a run needs travels in one frozen :class:`Settings`, built once by the
CLI (or by a test) and handed to the mode's ``download_many``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_DEST",
    "DEFAULT_SERVER",
    "DEFAULT_TIMEOUT",
    "SERVERS",
    "Settings",
]

SERVERS: dict[str, str] = {
    "REMOTE": "https://www.fluentpython.com/data/flags",
    "LOCAL": "http://localhost:8000/flags",
    "DELAY": "http://localhost:8001/flags",
    "ERROR": "http://localhost:8002/flags",
}
DEFAULT_SERVER = "LOCAL"
DEFAULT_DEST = Path("downloaded")
# The DELAY server waits up to 5 s before answering; the book's 3.1 s turns its
# slowest answers into timeouts (`--timeout 3.1` reproduces that on purpose).
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Settings:
    """How one run downloads: where from, where to, how many at once."""

    base_url: str
    """Flags are fetched from ``{base_url}/{cc}/{cc}.gif``, lower case."""

    server: str = DEFAULT_SERVER
    """The label shown in the reports: LOCAL, DELAY, ERROR, REMOTE, or CUSTOM."""

    dest: Path = DEFAULT_DEST
    """Folder the flags are saved into, as ``XX.gif``."""

    concurrency: int = 1
    """Requests in flight at once: the book's ``actual_req``, already capped."""

    verbose: bool = False
    """One line per flag instead of a progress bar."""

    timeout: float = DEFAULT_TIMEOUT
    """Seconds allowed to connect, and between two reads of one answer."""

    retries: int = 0
    """Extra attempts after a transient failure (never after a 404)."""
