"""The settings of one download run, and the servers the book names.

Everything a run needs travels in one frozen :class:`Settings`, built once by the
CLI (or by a test) and handed to the mode's ``download_many``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flags2.pace import RateLimit

__all__ = [
    "DEFAULT_DEST",
    "DEFAULT_SERVER",
    "DEFAULT_TIMEOUT",
    "MAP_MODES",
    "MAX_RETRIES",
    "MODES",
    "SERVERS",
    "Settings",
]

# The --mode names, as users type them, and the modules that implement them:
# the one list the command line, the runner, the bench and the tests share.
MODES: dict[str, str] = {
    "sequential": "flags2.sequential",
    "threadpool": "flags2.threadpool",
    "asyncio": "flags2.aio",
    "processpool": "flags2.processpool",
}
# The modes whose download_many can use the book's ``executor.map`` (--map).
MAP_MODES = ("threadpool", "processpool")

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
# A flag that still fails after 10 retries is not failing transiently: the
# backoff (0.1 s doubling, capped at 5 s) has then waited about 26 s for it,
# and a Retry-After server up to 100 s. More only makes a dead server slower.
MAX_RETRIES = 10


@dataclass(frozen=True, slots=True)
class Settings:
    """How one run downloads: where from, where to, how many at once."""

    base_url: str
    """Flags are fetched from ``{base_url}/{cc}/{cc}.gif``; only ``cc`` is lowered."""

    site: str = DEFAULT_SERVER
    """The `-s` label shown in the reports ("LOCAL site: ..."): LOCAL, DELAY, ERROR,
    REMOTE, or CUSTOM. (The `--json` record keeps the key ``server``.)"""

    dest: Path = DEFAULT_DEST
    """Folder the flags are saved into, as ``XX.gif`` (or as country names)."""

    concurrency: int = 1
    """Requests in flight at once: the book's ``actual_req``, already capped."""

    verbose: bool = False
    """One line per flag instead of a progress bar."""

    timeout: float = DEFAULT_TIMEOUT
    """Seconds allowed to connect, and between two reads of one answer."""

    retries: int = 0
    """Extra attempts after a transient failure (never after a 404)."""

    skip_existing: bool = False
    """Do not request a flag whose file in `dest` is already a whole GIF."""

    names: bool = False
    """Save as the country's name from ``metadata.json`` (the book's flags3)."""

    rate: RateLimit | None = None
    """At most this many request starts per period, over the whole run."""

    executor_map: bool = False
    """``--map``: results taken in submission order (the book's ``executor.map``)
    instead of as they complete; pool modes only."""
    http2: bool = True
    """Offer HTTP/2 (ALPN) to an https server; ``--http1.1`` turns it off."""
