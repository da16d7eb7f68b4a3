"""Leases on a bundled server: it lives while any run that uses it does.

Two runs in two terminals often share the bundled server on a port: the first
starts it, the second finds it listening. Each run holds a *shared* lock on a
lease file named after the port while it runs. The server, once the run that
started it has gone, waits for an *exclusive* lock on the same file, which the
kernel grants only when no run holds the lease any more, however those runs
ended: a process's locks go with it, SIGKILL included. So a server never stops
under a run still using it, and never outlives the last one. The server keeps
the exclusive lock until it exits, so a run arriving while it stops waits,
finds the port closed, and starts a server of its own.

The lease files live in a folder of the user's at a fixed place
(`flags2.portable.private_dir`: ``/tmp/flags2-UID``, or ``%LOCALAPPDATA%``),
not under ``TMPDIR``, so every run of the user finds them whatever its
``TMPDIR`` says. The locks are `flags2.portable.lock`'s: ``flock`` on POSIX,
byte-range locks on Windows. Where no lock can be had (no such folder, a file
system without locks) a lease is a no-op and a run's server lives exactly as
long as the run.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import IO

# Not a copy of the platform split: flags2 is importable wherever these
# servers run (installed as flags2.servers, or side by side in a checkout).
from flags2 import portable

__all__ = ["AVAILABLE", "Lease", "lease_path"]

AVAILABLE = portable.CAN_LOCK
"""Whether leases work here; without them a bundled server is never shared."""

_POLL = 0.05


def lease_path(port: int) -> Path | None:
    """The lease file of the bundled server on `port`, private to this user.

    None if the user's folder cannot be had safely (then no lease is taken).
    """
    folder = portable.private_dir("flags2")
    return None if folder is None else folder / f"port{port}.lease"


class Lease:
    """One lock on a lease file, shared (a run) or exclusive (the server)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    @property
    def held(self) -> bool:
        """Whether this lease currently holds its lock."""
        return self._file is not None

    def _lock(self, *, exclusive: bool, timeout: float | None) -> bool:
        if self._file is not None:
            return True
        if self.path is None or not AVAILABLE:
            return False
        try:
            # Never deleted: unlinking a lock file others have open would let
            # two processes lock two different files of the same name.
            file = open(self.path, "ab")  # noqa: SIM115 - held until release()
        except OSError:
            return False  # no lease then: the server lives as long as its run
        try:
            if not self._wait(file.fileno(), exclusive, timeout):
                file.close()
                return False
        except OSError:  # e.g. ENOLCK: a file system without locks
            file.close()
            return False
        except BaseException:
            file.close()
            raise
        self._file = file
        return True

    @staticmethod
    def _wait(fd: int, exclusive: bool, timeout: float | None) -> bool:
        if timeout is None:
            return portable.lock(fd, shared=not exclusive)
        deadline = time.monotonic() + timeout
        while not portable.lock(fd, shared=not exclusive, wait=False):
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL)
        return True

    def share(self, timeout: float) -> bool:
        """Take the lock shared, as a run using the server; False on timeout.

        Waits only while a server holding it exclusively is stopping.
        """
        return self._lock(exclusive=False, timeout=timeout)

    def take_if_unused(self) -> bool:
        """Take the lock exclusively if no run holds it; never waits."""
        return self._lock(exclusive=True, timeout=0)

    def take_when_unused(self) -> bool:
        """Take the lock exclusively, waiting for every run to let go.

        False if the file cannot be locked at all (then nothing can be known
        about the runs, and the caller should not wait for them).
        """
        return self._lock(exclusive=True, timeout=None)

    def release(self) -> None:
        """Let go of the lock (closing the file does); harmless if not held."""
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()
