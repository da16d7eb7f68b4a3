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
Temporaries that a killed run left behind (``.BR.gif.k2j4x9ab.part``, or
``.Brazil.gif.k2j4x9ab.flags2.part`` with ``--names``) are removed when a new
Saver starts in the folder; a temporary is locked while it is written, so a
run working in the same folder keeps its own, and a save whose temporary was
swept in the instant before its lock (it is visible first) writes
it again under a new name. Running out of descriptors (EMFILE) is a wait.

With ``--names`` a file name comes from the server (``metadata.json``), so it
is untrusted: :func:`country_file_name` refuses any name that could leave the
folder, hide, or spoof what a terminal shows, and :meth:`Saver.save` writes
only single names inside its folder. :meth:`Saver.existing` is the
``--skip-existing`` check: a file already there is kept only if it is a whole
GIF, by the same check a download passes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import re
import stat
import sys
import threading
import time
import unicodedata
from pathlib import Path

from flags2 import portable
from flags2.http11 import MAX_BODY

__all__ = [
    "FATAL_ERRNOS",
    "GIF_SIGNATURES",
    "MAX_NAME_BYTES",
    "BadFlag",
    "BadName",
    "FlagProblem",
    "NotAFile",
    "Saver",
    "check_flag",
    "country_file_name",
    "gif_flaw",
]

GIF_SIGNATURES = (b"GIF87a", b"GIF89a")

# A new temporary: never an existing file (nor a link's target), binary on
# Windows; os.open makes descriptors non-inheritable by itself (PEP 446).
_CREATE = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
_NAME_TRIES = 100  # 32 random bits a name: a clash is retried, never shown

# How often a save is tried when a starting run sweeps its temporaries each
# time. Out of descriptors, a save waits (portable.DESCRIPTOR_WAIT) for another
# flag to give one back.
_SWEPT_TRIES = 3
# Where an open file cannot be renamed (Windows), it is closed first; there a
# file open elsewhere cannot be deleted either, so the sweep spares it anyway.
_REPLACE_OPEN = sys.platform != "win32"
# Write errors that do not depend on the flag: the next save would fail alike.
FATAL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES})
# Exactly the temporaries save() creates: a random part between them.
# A country name's temporary ends differently, so that the sweep can tell it
# from a user's file without knowing the names.
_PREFIX, _SUFFIX, _NAME_SUFFIX = ".{}.", ".part", ".flags2.part"
_TEMPORARY = re.compile(
    r"\.[A-Z]{2}\.gif\.[a-z0-9_]+\.part|\.[^/]+\.gif\.[a-z0-9_]{8}\.flags2\.part"
)
_CODE_FILE = re.compile(r"[A-Z]{2}\.gif")
# A file name, and so its temporary (the name, its dots, the 8 random
# characters and the suffix: 22 bytes more), must fit the 255 bytes of a name.
MAX_NAME_BYTES = 255 - len(_PREFIX.format("")) - 8 - len(_NAME_SUFFIX)
# Controls, invisible formatting (a right-to-left override), lone surrogates,
# private or unassigned code points, and line breaks: never in a file name.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# What Windows cannot hold in a name (as ntpath.isreserved, new in 3.13, says):
# these characters, and its device names, with any extension and in any case;
# COM0 and LPT0 too, which some versions reserve.
_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')
_WINDOWS_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in "0123456789\xb9\xb2\xb3"}
)


class FlagProblem(ValueError):
    """A flag that cannot be saved, said in our own words (no class name)."""


class BadFlag(FlagProblem):
    """A 200 answer whose body is not a complete GIF: an error, never saved."""


class BadName(FlagProblem):
    """A country name that cannot safely be a file name in the folder."""


class NotAFile(FlagProblem):
    """Something that is not a file (a folder, a fifo) has the flag's name."""


def country_file_name(country: str) -> str:
    """The file a flag is saved as with ``--names``: spaces as underscores.

    BadName for anything that could leave the folder, hide, or show what it
    is not (``../../etc/x``, ``.hidden``, an escape sequence), and for what one
    of the systems flags2 runs on cannot hold, so that a folder of flags copies
    anywhere: Windows' ``<>:"|?*``, a trailing dot or space (Windows drops it,
    so the file would not be the one asked for), and its device names
    (``CON``, ``nul.txt``, ``COM1``, ``LPT³``). Leading spaces are dropped::

        >>> country_file_name("Côte d'Ivoire")
        "Côte_d'Ivoire.gif"
        >>> country_file_name("Aux")
        Traceback (most recent call last):
        ...
        flags2.save.BadName: unsafe country name 'Aux': a device name on Windows (AUX)
        >>> country_file_name("Who?")
        Traceback (most recent call last):
        ...
        flags2.save.BadName: unsafe country name 'Who?': ... Windows forbids (?)
    """
    stem = country.lstrip()
    problem = _name_problem(stem)
    if problem is not None:
        shown = country if len(country) <= 40 else f"{country[:40]}..."
        raise BadName(f"unsafe country name {shown!r}: {problem}")
    return f"{stem.replace(' ', '_')}.gif"


def _name_problem(stem: str) -> str | None:
    """What makes `stem` (a name before its spaces become ``_``) unsafe, if any."""
    if not stem.strip():
        return "empty"
    if "/" in stem or "\\" in stem:
        return "a path separator (/ or \\)"
    if stem.startswith("."):
        return "a leading dot (a hidden file, or . and ..)"
    for ch in stem:
        if ch != " " and (
            unicodedata.category(ch) in _UNSAFE_CATEGORIES or ch.isspace()
        ):
            return f"a control or invisible character (U+{ord(ch):04X})"
    if stem.endswith((".", " ")):
        return "a trailing dot or space (Windows drops it)"
    for ch in stem:
        if ch in _WINDOWS_FORBIDDEN:
            return f"a character Windows forbids ({ch})"
    device = stem.partition(".")[0].rstrip(" ").upper()
    if device in _WINDOWS_DEVICES:
        return f"a device name on Windows ({device})"
    if len(f"{stem}.gif".encode()) > MAX_NAME_BYTES:
        return f"longer than {MAX_NAME_BYTES} bytes as a file name"
    return None


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

    def __init__(self, dest: Path, *, sweep: bool = True) -> None:
        self.dest = dest
        self._folder = os.fspath(dest)
        # Held for a whole write, so cancel() never races a half-written file.
        self._lock = threading.Lock()
        self._cancelled = False
        self.saved: dict[str, int] = {}
        """Each file this saver wrote, and its size: what a stop must not lose."""
        self.files: dict[str, str] = {}
        """The file each code is saved as (or was being), when save() was told."""
        self.failed: OSError | None = None
        """The write error that cancelled this saver (ENOSPC...), if one did."""
        self.failed_file = ""
        """The file whose save met `failed`."""
        # sweep=False for a process pool's workers: the parent swept before any
        # of them started, and a sweep could meet another worker's temporary
        # in the instant between its creation and its lock.
        self.swept = self._sweep() if sweep else 0
        """How many stale temporaries were removed from `dest` at the start."""

    def save(self, body: bytes, filename: str, cc: str | None = None) -> bool:
        """Write `body` as `filename`; False (and nothing written) once cancelled.

        `cc`, if given, is the code the file is the flag of (see `files`).
        """
        _check_single_name(filename)
        suffix = _SUFFIX if _CODE_FILE.fullmatch(filename) else _NAME_SUFFIX
        with self._lock:
            if self._cancelled:
                return False
            if cc is not None:
                self.files[cc] = filename
            for attempt in range(1, _SWEPT_TRIES + 1):
                if self._write(body, filename, suffix, last=attempt == _SWEPT_TRIES):
                    break
            self.saved[filename] = len(body)
            return True

    def _write(self, body: bytes, filename: str, suffix: str, *, last: bool) -> bool:
        """One try at a save; False if a starting run swept its temporary.

        The temporary is visible before it is locked, and a sweep can take it
        in that instant (or, where a closed file is what os.replace needs,
        just before the replace): the write then went to a name that is gone,
        so it is done again under a new one.
        """
        fd, tmp = self._temporary(filename, suffix)
        try:
            portable.lock(fd)  # held until the file is in place
            _write_all(fd, body)
            if not _REPLACE_OPEN:
                os.close(fd)
                fd = -1
            try:
                os.replace(tmp, os.path.join(self._folder, filename))
            except FileNotFoundError:
                if last or os.path.lexists(tmp):
                    raise
                return False  # swept: try again under a new name
        except BaseException as exc:  # KeyboardInterrupt too: no .part survives
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                self._fail(exc, filename)
            raise
        finally:
            if fd != -1:
                os.close(fd)
        return True

    def _temporary(self, filename: str, suffix: str) -> tuple[int, str]:
        """A new temporary for `filename`, waiting while descriptors run out."""
        while True:
            try:
                return _create_temporary(self._folder, _PREFIX.format(filename), suffix)
            except OSError as exc:
                if portable.out_of_descriptors(exc):
                    # Another flag gives its descriptor back soon: a wait, never
                    # this flag's error.
                    time.sleep(portable.DESCRIPTOR_WAIT)
                    continue
                self._fail(exc, filename)
                raise

    def existing(self, filename: str) -> int | None:
        """The size of `filename` in the folder if it is a whole GIF already.

        None if there is no such file, or it is not a whole GIF (a download
        replaces it); NotAFile if a folder or any non-file has its name.
        """
        _check_single_name(filename)
        path = self.dest / filename
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:  # a dangling link too: the save replaces it
            return None
        if not stat.S_ISREG(mode):
            raise NotAFile(f"{filename} exists and is {_kind(mode)}, not a file")
        # O_NONBLOCK: if a fifo took the file's place since, never wait on it.
        fd = os.open(path, os.O_RDONLY | portable.NONBLOCK)
        with open(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise NotAFile(f"{filename} exists and is not a file")
            data = file.read(MAX_BODY + 1)  # no download could be longer
        if len(data) > MAX_BODY or gif_flaw(data) is not None:
            return None
        return len(data)

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
                # Never a link's target, never a fifo's wait.
                fd = portable.open_no_follow(  # writable: lock() may need it
                    self.dest / name, os.O_RDWR | portable.NONBLOCK
                )
            except OSError:
                continue
            try:
                if portable.lock(fd, wait=False) and stat.S_ISREG(os.fstat(fd).st_mode):
                    os.unlink(self.dest / name)
                    removed += 1
            except OSError:  # gone already, or a file system without locks
                pass
            finally:
                os.close(fd)
        return removed

    def cancel(self) -> None:
        """Refuse further writes; the lock means none is half done.

        A Ctrl-C can land between a temporary's creation and the write's
        cleanup taking it over (the signal is acted on as the open returns):
        that temporary, unlocked, is swept here as a kill -9's is at the start.
        """
        with self._lock:
            self._cancelled = True
            self._sweep()


def _create_temporary(folder: str, prefix: str, suffix: str) -> tuple[int, str]:
    """A new file ``prefix + 8 random characters + suffix`` in `folder`, open.

    What ``tempfile.mkstemp`` does (a new name, O_EXCL, never inherited by a
    child) in one system call, not six; the name is drawn from `random`, as
    tempfile's are (reseeded in a forked child; O_EXCL makes it unique, and
    os.urandom would be one more system call per flag): its file is private
    (0600), and a flag must get the mode any new file gets, which its
    creation mode (0666 less the umask, by the kernel) gives without a chmod.
    """
    for _ in range(_NAME_TRIES):
        path = os.path.join(folder, f"{prefix}{random.getrandbits(32):08x}{suffix}")
        try:
            return os.open(path, _CREATE, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary name", folder)


def _write_all(fd: int, body: bytes) -> None:
    """os.write until all of `body` is written (a short write: the rest again)."""
    view = memoryview(body)
    while view:
        view = view[os.write(fd, view) :]


def _check_single_name(filename: str) -> None:
    """BadName unless `filename` names an entry of the folder itself."""
    if (
        filename in ("", ".", "..")
        or os.path.basename(filename) != filename
        or "\0" in filename
    ):
        raise BadName(f"{filename!r} is not a file name inside the folder")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a fifo"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"
