"""Standard streams that cannot break a run: closed, full, or failing.

A run downloads and saves its flags even when nobody can read its report:

- A descriptor closed at start (``>&-``, ``2>&-``) gets ``/dev/null`` in its
  place: otherwise the first file or socket the run opens would become
  descriptor 1 or 2, and whatever writes there (a child process, the bundled
  server) would write into it. The output goes nowhere, as the user asked, and
  the exit status is the run's own.
- A write that fails (``>/dev/full``, an I/O error) stops that stream, not the
  run; :func:`lost` then tells the command to exit 120, as Python does when
  its last flush of stdout fails.
- A reader that goes away (``| head``, EPIPE) still ends the command, with
  click's exit status 1: nobody wants the rest of that output.
"""

from __future__ import annotations

import errno
import io
import os
import sys
from typing import TextIO

__all__ = ["guard", "lost"]


class _Guarded(io.TextIOBase):
    """A text stream whose failed writes are dropped and remembered."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self.lost = False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self._stream.errors

    def write(self, text: str) -> int:
        if not self.lost:
            try:
                self._stream.write(text)
            except (OSError, ValueError) as exc:
                self._lose(exc)
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                self._stream.flush()
            except (OSError, ValueError) as exc:
                self._lose(exc)

    def isatty(self) -> bool:
        return not self.lost and self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def writable(self) -> bool:
        return True

    def _lose(self, exc: Exception) -> None:
        if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
            raise exc
        self.lost = True


def guard() -> None:
    """Make stdin, stdout and stderr safe for the rest of the process."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:  # closed: the lowest free descriptor is this one
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stdout is None:
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = _Guarded(sys.stdout)
    sys.stderr = _Guarded(sys.stderr)


def lost(stream: TextIO | None) -> bool:
    """True if some output to `stream` could not be written."""
    return bool(getattr(stream, "lost", False))
