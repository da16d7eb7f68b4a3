"""The one place where POSIX-only calls sit, behind small platform-neutral helpers.

flags2 runs on Linux, macOS and Windows. A few of its promises rest on calls
that only POSIX has (``fcntl``, ``resource``, ``os.O_NOFOLLOW``,
``os.getuid``, ``os.setsid``); each helper here keeps the promise by another
route where the call is missing:

* `open_file_limit`, `raise_open_file_limit`: the descriptor limit (``ulimit
  -n``), read and lifted with ``resource``; None where there is no such limit
  to read (Windows: sockets are kernel handles, not C-runtime descriptors).
* `lock`: an advisory lock on an open file, shared or exclusive, that the
  system drops when its process dies, SIGKILL included. ``fcntl.flock`` on
  POSIX; elsewhere byte-range locks (``msvcrt.locking`` on Windows, ``os.lockf``
  on a POSIX build without ``fcntl``), which are exclusive only, so a shared
  lock is one byte of `_SLOTS` and an exclusive one all of them: a reader-writer
  lock out of exclusive ones, in the standard library on every system.
* `open_no_follow`, `NONBLOCK`: an open that refuses a symbolic link, and
  "never wait on a fifo".
* `private_dir`: a per-user folder at a fixed place, whatever ``TMPDIR`` says,
  created safely (owned by the user, mode 0700, not a link).
* `CAN_WAIT4`: whether ``os.wait4`` gives a child's rusage, which the
  bench's measuring helper reads (it samples through psutil elsewhere).
* `detached`: `subprocess.Popen` options that start a child in a session (on
  Windows, a process group and no console) of its own.
* `die_with_parent`: a ``preexec_fn`` so that a child hears of its starter's
  death, SIGKILL included (Linux's ``prctl(PR_SET_PDEATHSIG)``; None elsewhere).
* `peak_rss_kib`: this process's peak memory (``resource``; 0 where unknown).
* `readable_now`: whether a socket has bytes (or its end) waiting, in one
  ``select.poll`` call; None without ``poll`` (Windows), to be asked another way.
* `kernel_timeout`: a bound on each blocking send or receive of a socket, kept
  by the kernel (``SO_SNDTIMEO``, ``SO_RCVTIMEO``); False where the option's
  form (a ``struct timeval``) is not known here (Windows), to be bounded by
  the socket's own timeout instead. `SocketBounds` picks between the two for
  a connection, client's or server's.
* `memory_dir`: a folder kept in memory (Linux's tmpfs ``/dev/shm``) for the
  scratch files of a timing, which a disk would slow by a varying amount; None
  elsewhere, to use the usual temporary folder.
* `thread_count`: the threads of this process, ``_thread``'s too (``/proc``).
* `sigint_held`: SIGINT blocked for a block, inherited by the children it
  starts (``signal.pthread_sigmask``; nothing where signals cannot be blocked).

Why not portalocker, filelock or fasteners: each costs 50-160 ms to import here
against well under 1 ms for ``fcntl``, and flags2 takes a lock on every run;
portalocker needs pywin32 for a shared lock on Windows, and filelock has none.
The byte-range scheme needs nothing installed, and it is what a test runs on
Linux with ``fcntl`` hidden, so the code Windows runs is tested here.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import select
import socket
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "CAN_LOCK",
    "CAN_WAIT4",
    "DESCRIPTOR_ERRNOS",
    "DESCRIPTOR_WAIT",
    "MEASURING_HELPER",
    "NONBLOCK",
    "SocketBounds",
    "detached",
    "die_with_parent",
    "kernel_timeout",
    "lock",
    "memory_dir",
    "open_file_limit",
    "open_no_follow",
    "out_of_descriptors",
    "peak_rss_kib",
    "private_dir",
    "raise_open_file_limit",
    "readable_now",
    "sigint_held",
    "thread_count",
]

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

DESCRIPTOR_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})
"""A process (EMFILE) or the system (ENFILE) is out of descriptors: a wait, not
a failure of whatever asked for one."""

DESCRIPTOR_WAIT = 0.05
"""Seconds between tries for a descriptor while there is none to be had."""


def out_of_descriptors(exc: OSError) -> bool:
    """Whether `exc` says only that no descriptor is free now (DESCRIPTOR_ERRNOS)."""
    return exc.errno in DESCRIPTOR_ERRNOS


NONBLOCK: int = getattr(os, "O_NONBLOCK", 0)
"""``os.O_NONBLOCK`` where it exists: an open that never waits on a fifo (Windows
has no fifos a path can name, so nothing to wait on there)."""

CAN_LOCK = fcntl is not None or sys.platform == "win32" or hasattr(os, "lockf")
"""Whether `lock` works here (else it raises OSError ENOLCK)."""

CAN_WAIT4 = hasattr(os, "wait4") and hasattr(os, "posix_spawnp")
"""Whether a child's own CPU time and peak memory come with its exit status
(``os.wait4``'s rusage); elsewhere `flags2.bench.measure` samples them."""

# What flags2.bench.measure runs where CAN_WAIT4: it spawns each command it is
# sent (a JSON line), reaps it with os.wait4 and answers the child's own rusage.
# The standard library's cheapest modules only: whatever it imports raises the
# floor under every measurement.
MEASURING_HELPER = """\
import json, os, signal, sys, time
# Children get SIGINT as the bench got it: default, unless it was ignored.
inherited = signal.signal(signal.SIGINT, signal.SIG_IGN)
sigdef = [] if inherited == signal.SIG_IGN else [signal.SIGINT]
# SIGTERM is what the bench's death sends (Spawner): the command goes too.
signal.signal(signal.SIGTERM, lambda *_: os.killpg(0, signal.SIGKILL))
for line in sys.stdin:
    job = json.loads(line)
    write = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, job["stdout"], write, 0o600),
        (os.POSIX_SPAWN_OPEN, 2, job["stderr"], write, 0o600),
    ]
    t0 = time.perf_counter()
    try:
        pid = os.posix_spawnp(job["argv"][0], job["argv"], job["env"],
                              file_actions=actions, setsigdef=sigdef)
    except OSError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        continue
    print(json.dumps({"pid": pid}), flush=True)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    print(json.dumps({"status": os.waitstatus_to_exitcode(status),
                      "wall": wall, "maxrss": usage.ru_maxrss,
                      "cpu": usage.ru_utime + usage.ru_stime}), flush=True)
"""

# macOS reports an unlimited hard limit but refuses a soft limit above this.
_UNLIMITED_TARGET = 65536
# The byte-range fallback: how many runs can share a lock at once, and where
# the locked bytes sit: far past any data, as Windows locks are mandatory.
_SLOTS = 64
_LOCK_BASE = 1 << 40
_POLL = 0.05


def open_file_limit() -> int | None:
    """The soft limit on open descriptors; None if unlimited or not a thing here."""
    if resource is None:
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def raise_open_file_limit(wanted: int | None = None) -> int | None:
    """Lift the soft descriptor limit to `wanted`, or as far as allowed when None.

    Never above the hard limit (a process may not), never lowered; returns the
    soft limit now in force, as `open_file_limit`. Only a program's start-up
    should call this: the limit is process-wide.
    """
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = _UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    target = ceiling if wanted is None else min(wanted, ceiling)
    if soft != resource.RLIM_INFINITY and soft < target:
        # Some systems cap below the hard limit; then keep what we have.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return open_file_limit()


def lock(fd: int, *, shared: bool = False, wait: bool = True) -> bool:
    """Lock the open file `fd`; False if `wait` is False and someone holds it.

    Shared locks coexist; an exclusive one excludes every other. Closing the
    file lets go (so does the death of the process). `fd` must be open for
    writing: byte-range locks (``os.lockf``) need it. Raises OSError where the
    file cannot be locked at all (a file system without locks: ENOLCK).
    """
    if fcntl is not None:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode if wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    try_range = _range_locker()
    while True:
        if shared:
            taken = any(try_range(fd, _LOCK_BASE + i, 1) for i in range(_SLOTS))
        else:
            taken = try_range(fd, _LOCK_BASE, _SLOTS)
        if taken or not wait:
            return taken
        time.sleep(_POLL)


def _range_locker() -> Callable[[int, int, int], bool]:
    """A non-blocking exclusive lock of `length` bytes at `start`: True if taken.

    Both calls lock from the file's offset, which is put back afterwards: a
    file being written must go on at its own place.
    """
    if sys.platform == "win32":  # pragma: no cover - Windows
        import msvcrt

        def take(fd: int, length: int) -> None:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, length)

    elif hasattr(os, "lockf"):

        def take(fd: int, length: int) -> None:
            os.lockf(fd, os.F_TLOCK, length)

    else:
        raise OSError(errno.ENOLCK, "no file locks on this system")

    def try_range(fd: int, start: int, length: int) -> bool:
        offset = os.lseek(fd, 0, os.SEEK_CUR)
        os.lseek(fd, start, os.SEEK_SET)
        try:
            take(fd, length)
        except (BlockingIOError, PermissionError):  # EAGAIN, EACCES: held
            return False
        finally:
            os.lseek(fd, offset, os.SEEK_SET)
        return True

    return try_range


def open_no_follow(path: Path, flags: int) -> int:
    """``os.open`` that refuses a symbolic link (OSError ELOOP), as O_NOFOLLOW.

    Without the flag: refuse a link seen by ``lstat``, then check that what
    was opened is that same file, so a link swapped in between is caught.
    """
    nofollow = getattr(os, "O_NOFOLLOW", None)
    if nofollow is not None:
        return os.open(path, flags | nofollow)
    before = os.lstat(path)
    if stat.S_ISLNK(before.st_mode):
        raise OSError(errno.ELOOP, "a symbolic link", str(path))
    fd = os.open(path, flags)
    after = os.fstat(fd)
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise OSError(errno.ELOOP, "replaced while being opened", str(path))
    return fd


def private_dir(name: str) -> Path | None:
    """A folder only this user can use, the same for every process of the user.

    POSIX: ``/tmp/NAME-UID`` (not ``TMPDIR``, which differs between a user's
    terminals, and on macOS is a per-login folder), made mode 0700 and used
    only if it is a real folder owned by this user and closed to others.
    Windows: ``%LOCALAPPDATA%\\NAME``, inside the user's own profile. None if
    no such folder can be had (then the caller does without).
    """
    getuid: Callable[[], int] | None = getattr(os, "getuid", None)
    if getuid is None:
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        folder = Path(base) / name
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        return None if folder.is_symlink() else folder
    uid = getuid()
    folder = Path("/tmp") / f"{name}-{uid}"
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass  # checked below, as one made now is
    except OSError:
        return None
    try:
        info = os.lstat(folder)
    except OSError:
        return None
    # Someone else's folder, or a link, could hold our locks or see our files.
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid:
        return None
    if stat.S_IMODE(info.st_mode) & 0o077:
        try:
            os.chmod(folder, 0o700, follow_symlinks=False)
        except (OSError, NotImplementedError):
            return None
    return folder


def detached() -> dict[str, Any]:
    """`subprocess.Popen` options for a child in a session of its own.

    Such a child gets no SIGHUP when its starter's terminal closes, and none of
    the signals sent to the starter's process group (``kill -TERM -PGID``,
    ``timeout``, a terminal's Ctrl-C): only what is sent to it by its pid.
    """
    if sys.platform == "win32":  # pragma: no cover - Windows
        import subprocess  # only here: it costs every run an import elsewhere

        flags = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS
        return {"creationflags": flags}
    return {"start_new_session": True}


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(signum: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` giving the child `signum` once this process dies.

    A bench or a test run that is killed (SIGKILL, pytest-timeout's
    ``os._exit``) runs no cleanup, so its children must hear of it from the
    kernel: ``prctl(PR_SET_PDEATHSIG)``, called between fork and exec (it
    survives exec). The signal comes when the *thread* that started the child
    ends: start such children from one that outlives them. None where there is
    no parent-death signal (all but Linux). The C function is looked up here,
    in the parent, so the forked child runs no import::

        proc = subprocess.Popen(argv, preexec_fn=die_with_parent(signal.SIGKILL))
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def in_child() -> None:
        if prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signum)) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # it died before the call: too late to hear
            os.kill(os.getpid(), signum)

    return in_child


def readable_now(fd: int) -> bool | None:
    """Whether `fd` has something to read, or has ended, at this instant.

    One system call (a ``poll`` that does not wait), where a non-blocking
    peek takes three (the socket's mode set, the read, the mode set back).
    None where there is no ``select.poll`` (Windows); ``select.select`` is
    not the fallback, as it fails above descriptor 1024.
    """
    if not hasattr(select, "poll"):  # Windows
        return None
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


# struct timeval, the form SO_SNDTIMEO and SO_RCVTIMEO take: two C longs on
# Linux; a long and an int, padded to the long's size, on macOS. Windows takes
# a DWORD of milliseconds, and is left to the socket's own timeout.
_TIMEVAL = {"linux": "@ll", "darwin": "@li4x"}.get(sys.platform)


def kernel_timeout(sock: socket.socket, *, send: bool, seconds: float | None) -> bool:
    """Bound each blocking send (`send`) or receive on `sock` by `seconds`.

    The kernel keeps the bound, so a blocking socket's call is one system
    call, where a socket with a timeout of its own polls before each one.
    A call that runs out raises BlockingIOError (EAGAIN). The bound is each
    call's, where a socket's own timeout is one deadline for a whole
    ``sendall``: the same for a request head, which one send carries. None
    is no bound; a positive bound is never rounded down to 0, which would
    mean none. False, and nothing set, where this system's form is not known
    or not taken (a 32-bit build whose ``time_t`` is 64 bits wants another).
    """
    option = getattr(socket, "SO_SNDTIMEO" if send else "SO_RCVTIMEO", None)
    if _TIMEVAL is None or option is None:
        return False
    whole, micro = 0, 0
    if seconds is not None:
        whole, micro = divmod(max(1, math.ceil(seconds * 1_000_000)), 1_000_000)
    try:
        value = struct.pack(_TIMEVAL, whole, micro)
        sock.setsockopt(socket.SOL_SOCKET, option, value)
    except (OSError, struct.error, OverflowError):
        return False
    return True


_UNSET = -1.0  # no bound set yet (no timeout is negative)


class SocketBounds:
    """The bounds on a connection's next send and receive, kept where they cost least.

    A plain socket stays blocking, its bounds kept by the kernel
    (`kernel_timeout`): each send or receive is then one system call, where
    a socket with a timeout polls first, and each call lets go of the GIL, a
    switch between threads when hundreds share a process. A bound is set
    only when it changes: a kept-alive connection's next request, and each
    read after progress, want the one it has. Over TLS (an SSLSocket's
    record layer reads for itself), and where the kernel takes no bound, the
    socket's own timeout, also set only when it changes (``settimeout`` is
    a system call whatever the value). A socket made non-blocking meanwhile
    (a peek) is made blocking again by the next bound.
    """

    __slots__ = ("_kernel", "_recv", "_send", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._kernel = type(sock) is socket.socket
        self._send: float | None = _UNSET
        self._recv: float | None = _UNSET

    def arm(self, seconds: float | None, *, send: bool = False) -> None:
        """Bound the next send (`send`) or receive by `seconds`; None: no bound."""
        sock = self.sock
        if self._kernel:
            if sock.gettimeout() is not None:  # new, or after a peek
                sock.settimeout(None)
            if seconds == (self._send if send else self._recv):
                return
            if kernel_timeout(sock, send=send, seconds=seconds):
                if send:
                    self._send = seconds
                else:
                    self._recv = seconds
                return
            self._kernel = False  # the socket keeps both bounds from now on
        if sock.gettimeout() != seconds:
            sock.settimeout(seconds)


_MEMORY_DIR = "/dev/shm"


def memory_dir() -> str | None:
    """A writable folder kept in memory, for a timing's scratch files; None if none.

    Creating a file on a disk costs a different amount from one folder and
    hour to the next, which would blur a comparison of downloaders; tmpfs
    costs the same every time. Linux mounts one at ``/dev/shm``; macOS and
    Windows have no such folder to hand.
    """
    if not sys.platform.startswith("linux"):
        return None
    if os.path.isdir(_MEMORY_DIR) and os.access(_MEMORY_DIR, os.W_OK | os.X_OK):
        return _MEMORY_DIR
    return None


def thread_count() -> int:
    """The threads of this process, those ``threading`` never saw included.

    ``threading.active_count()`` misses threads started by ``_thread`` (the
    bundled servers' handler threads, idle ones too) and by C code. Linux
    lists every thread in /proc; elsewhere (where ``fork`` is not the default
    start method anyway) ``threading``'s count is the one there is.
    """
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # no /proc: macOS, Windows
        return threading.active_count()


def peak_rss_kib() -> int:
    """This process's peak resident memory in KiB; 0 where it cannot be read."""
    if resource is None:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes there


@contextlib.contextmanager
def sigint_held() -> Iterator[None]:
    """SIGINT blocked in this thread for the block, and in the children it starts.

    A blocked signal stays blocked over fork and exec, so a child started here
    can set its own handler before a Ctrl-C reaches it; the parent gets a
    Ctrl-C that came meanwhile as soon as the block ends. Where signals cannot
    be blocked (Windows) it does nothing.
    """
    import signal

    block = getattr(signal, "pthread_sigmask", None)
    held = {signal.SIGINT}
    if block is not None:
        block(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        if block is not None:
            block(signal.SIG_UNBLOCK, held)
