"""Saving flags so that no partial or corrupt file is ever left behind.

A body is checked first (as long as announced, and a whole GIF: every block
of it down to the trailer byte that ends the file), then written to a temporary
file in the destination folder and moved onto ``XX.gif`` with ``os.replace``,
which is atomic on one filesystem. :meth:`Saver.cancel` (on Ctrl-C) waits for
a write in progress, removes every temporary file, and refuses later writes,
so a worker thread that finishes after the interrupt cannot leave one either.

A write error that every later flag would meet too (a full disk, a read-only
or forbidden folder) cancels the saver the same way and is kept in
:attr:`Saver.failed`, so the run can stop instead of repeating it per flag.
Temporaries that a killed run left behind (``.BR.gif.k2j4x9ab.part``) are
removed when a new Saver starts in the folder; a temporary is locked while
it is written, so a run working in the same folder keeps its own.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import tempfile
import threading
from pathlib import Path

__all__ = [
    "FATAL_ERRNOS",
    "GIF_SIGNATURES",
    "BadFlag",
    "Saver",
    "check_flag",
    "gif_flaw",
]

GIF_SIGNATURES = (b"GIF87a", b"GIF89a")

# mkstemp creates files readable by their owner only; a flag should get the
# mode any new file gets. Read once, at import, while no thread can race it.
_UMASK = os.umask(0)
os.umask(_UMASK)

# Write errors that do not depend on the flag: the next save would fail alike.
FATAL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES})
# Exactly the temporaries save() creates: mkstemp's random part between them.
_PREFIX, _SUFFIX = ".{}.", ".part"
_TEMPORARY = re.compile(r"\.[A-Z]{2}\.gif\.[a-z0-9_]+\.part")


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
    flaw = gif_flaw(body)
    if flaw is not None:
        raise BadFlag(f"incomplete GIF: {flaw} ({len(body)} bytes)")


def gif_flaw(data: bytes) -> str | None:
    """What is wrong with a GIF's block structure, or None if it is whole.

    Walks every block (GIF89a, section 17 on) to the trailer byte ``0x3B``,
    which must be the last byte: a body cut anywhere, whatever its framing
    said, is caught. Pillow would do it too, for an import that costs more
    than downloading a flag.

    >>> gif_flaw(b"GIF89a" + bytes(7) + b";")
    >>> gif_flaw(b"GIF89a" + bytes(7) + b",")
    'cut short at byte 14'
    """
    if not data.startswith(GIF_SIGNATURES):
        return "no GIF signature"
    end = len(data)
    pos = 13  # signature and logical screen descriptor
    if pos > end:
        return f"cut short at byte {end}"
    if data[10] & 0x80:  # a global color table follows
        pos += 3 << ((data[10] & 7) + 1)
    while pos < end:
        kind = data[pos]
        if kind == 0x3B:  # the trailer
            return None if pos == end - 1 else f"{end - pos - 1} bytes after the end"
        if kind == 0x21:  # an extension: its label, then data sub-blocks
            pos += 2
        elif kind == 0x2C:  # an image: descriptor, color table, LZW code size
            if pos + 10 > end:
                break
            packed = data[pos + 9]
            pos += 10
            if packed & 0x80:
                pos += 3 << ((packed & 7) + 1)
            pos += 1
        else:
            return f"unknown block 0x{kind:02x} at byte {pos}"
        while pos < end and data[pos]:  # sub-blocks, each led by its size
            pos += data[pos] + 1
        pos += 1  # the empty sub-block that ends them
    return f"cut short at byte {min(pos, end) + 1}"


class Saver:
    """Writes checked flags into `dest`, atomically, until cancelled."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        # Held for a whole write, so cancel() never races a half-written file.
        self._lock = threading.Lock()
        self._cancelled = False
        self.saved: dict[str, int] = {}
        """Each file this saver wrote, and its size: what a stop must not lose."""
        self.failed: OSError | None = None
        """The write error that cancelled this saver (ENOSPC...), if one did."""
        self.failed_file = ""
        """The file whose save met `failed`."""
        self.swept = self._sweep()
        """How many stale temporaries were removed from `dest` at the start."""

    def save(self, body: bytes, filename: str) -> bool:
        """Write `body` as `filename`; False (and nothing written) once cancelled."""
        with self._lock:
            if self._cancelled:
                return False
            try:
                fd, tmp = tempfile.mkstemp(
                    dir=self.dest, prefix=_PREFIX.format(filename), suffix=_SUFFIX
                )
            except OSError as exc:
                self._fail(exc, filename)
                raise
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # held until the file is in place
                os.fchmod(fd, 0o666 & ~_UMASK)
                with open(fd, "wb", closefd=False) as file:
                    file.write(body)
                os.replace(tmp, self.dest / filename)
                self.saved[filename] = len(body)
            except BaseException as exc:  # KeyboardInterrupt too: no .part survives
                Path(tmp).unlink(missing_ok=True)
                if isinstance(exc, OSError):
                    self._fail(exc, filename)
                raise
            finally:
                os.close(fd)
            return True

    def _fail(self, exc: OSError, filename: str) -> None:
        if exc.errno in FATAL_ERRNOS:
            self.failed, self.failed_file = exc, filename
            self._cancelled = True

    def _sweep(self) -> int:
        """Remove temporaries no live write holds (a kill -9 left them)."""
        try:
            names = [n for n in os.listdir(self.dest) if _TEMPORARY.fullmatch(n)]
        except OSError:  # no folder yet: nothing to sweep
            return 0
        removed = 0
        for name in names:
            try:
                flags = (
                    os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                )  # never a fifo's wait
                fd = os.open(self.dest / name, flags)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    os.unlink(self.dest / name)
                    removed += 1
            except OSError:  # locked: another run is writing it right now
                pass
            finally:
                os.close(fd)
        return removed

    def cancel(self) -> None:
        """Refuse further writes; the lock means none is half done."""
        with self._lock:
            self._cancelled = True
