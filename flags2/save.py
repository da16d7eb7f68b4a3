"""Saving flags so that no partial or corrupt file is ever left behind.

A body is checked first (complete, and a GIF), then written to a temporary
file in the destination folder and moved onto ``XX.gif`` with ``os.replace``,
which is atomic on one filesystem. :meth:`Saver.cancel` (on Ctrl-C) waits for
a write in progress, removes every temporary file, and refuses later writes,
so a worker thread that finishes after the interrupt cannot leave one either.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

__all__ = ["GIF_SIGNATURES", "BadFlag", "Saver", "check_flag"]

GIF_SIGNATURES = (b"GIF87a", b"GIF89a")

# mkstemp creates files readable by their owner only; a flag should get the
# mode any new file gets. Read once, at import, while no thread can race it.
_UMASK = os.umask(0)
os.umask(_UMASK)


class BadFlag(ValueError):
    """A 200 answer whose body is not a complete GIF: an error, never saved."""


def check_flag(
    body: bytes, *, received: int, content_length: str | None, content_type: str
) -> None:
    """Raise BadFlag unless the body is as long as announced and is a GIF.

    `received` counts the bytes on the wire, which is what Content-Length
    announces even when the body came compressed.
    """
    if content_length is not None and content_length.isdigit():
        expected = int(content_length)
        if received != expected:
            raise BadFlag(
                f"incomplete body: {received} of {expected} bytes (Content-Length)"
            )
    if not body.startswith(GIF_SIGNATURES):
        kind = content_type.split(";")[0].strip() or "unknown type"
        raise BadFlag(f"not a GIF: {len(body)} bytes of {kind}")


class Saver:
    """Writes checked flags into `dest`, atomically, until cancelled."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        # Held for a whole write, so cancel() never races a half-written file.
        self._lock = threading.Lock()
        self._cancelled = False

    def save(self, body: bytes, filename: str) -> bool:
        """Write `body` as `filename`; False (and nothing written) once cancelled."""
        with self._lock:
            if self._cancelled:
                return False
            fd, tmp = tempfile.mkstemp(
                dir=self.dest, prefix=f".{filename}.", suffix=".part"
            )
            try:
                os.fchmod(fd, 0o666 & ~_UMASK)
                with os.fdopen(fd, "wb") as file:
                    file.write(body)
                os.replace(tmp, self.dest / filename)
            except BaseException:  # KeyboardInterrupt too: no .part survives
                Path(tmp).unlink(missing_ok=True)
                raise
            return True

    def cancel(self) -> None:
        """Refuse further writes; the lock means none is half done."""
        with self._lock:
            self._cancelled = True
