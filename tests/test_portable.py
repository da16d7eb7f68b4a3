"""flags2.portable: each helper keeps its promise with and without its POSIX call."""

from __future__ import annotations

import errno
import os
import socket
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flags2 import portable
from tests.helpers import LINUX_ONLY, kernel_bound

# The byte-range fallback (what Windows runs) is tried here by hiding fcntl.
BACKENDS = ["flock", "ranges"]

_HOLDER = textwrap.dedent(
    """
    import os, sys
    from flags2 import portable
    path, how, backend = sys.argv[1:]
    if backend == "ranges":
        portable.fcntl = None
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    assert portable.lock(fd, shared=how == "shared")
    print("locked", flush=True)
    sys.stdin.readline()
    """
)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name: str = request.param
    if name == "ranges":
        monkeypatch.setattr(portable, "fcntl", None)
    return name


def _hold(path: Path, how: str, backend: str) -> subprocess.Popen[str]:
    """Another process holding a lock on `path`, until its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), how, backend],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    return proc


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    proc.wait(timeout=10)
    proc.stdout.close()


def _try(path: Path, *, shared: bool) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        return portable.lock(fd, shared=shared, wait=False)
    finally:
        os.close(fd)


def test_shared_locks_coexist_and_exclude_an_exclusive_one(
    tmp_path: Path, backend: str
) -> None:
    path = tmp_path / "lease"
    holder = _hold(path, "shared", backend)
    try:
        assert _try(path, shared=True)
        assert not _try(path, shared=False)
    finally:
        _release(holder)
    assert _try(path, shared=False)  # its lock went with it


def test_an_exclusive_lock_excludes_every_other(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "lease"
    holder = _hold(path, "exclusive", backend)
    try:
        assert not _try(path, shared=True)
        assert not _try(path, shared=False)
    finally:
        _release(holder)
    assert _try(path, shared=True)


def test_a_range_lock_leaves_the_file_offset_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(portable, "fcntl", None)
    fd = os.open(tmp_path / "part", os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"GIF89a")
        assert portable.lock(fd)
        os.write(fd, b";")
    finally:
        os.close(fd)
    assert (tmp_path / "part").read_bytes() == b"GIF89a;"  # not 1 TB further


@pytest.mark.parametrize("flag", [True, False], ids=["O_NOFOLLOW", "lstat"])
def test_open_no_follow_refuses_a_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: bool
) -> None:
    if not flag:
        monkeypatch.delattr(os, "O_NOFOLLOW")
    target = tmp_path / "target"
    target.write_text("keep")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(OSError) as refused:
        portable.open_no_follow(tmp_path / "link", os.O_RDONLY)
    assert refused.value.errno == errno.ELOOP
    os.close(portable.open_no_follow(target, os.O_RDONLY))


@pytest.fixture
def name() -> Iterator[str]:
    """A private folder name of this test's own, removed afterwards."""
    unique = f"flags2-test-{uuid.uuid4().hex[:8]}"
    yield unique
    for folder in Path("/tmp").glob(f"{unique}-*"):
        if folder.is_symlink() or not folder.is_dir():
            folder.unlink()
        else:
            folder.rmdir()


def test_private_dir_is_the_users_own_at_a_fixed_place(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    folder = portable.private_dir(name)
    assert folder == Path("/tmp") / f"{name}-{os.getuid()}"
    info = os.lstat(folder)
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
    os.chmod(folder, 0o755)  # opened up since: closed again
    assert portable.private_dir(name) == folder
    assert stat.S_IMODE(os.lstat(folder).st_mode) == 0o700


def test_private_dir_refuses_a_link_or_a_stranger_s_folder(
    name: str, tmp_path: Path
) -> None:
    place = Path("/tmp") / f"{name}-{os.getuid()}"
    place.symlink_to(tmp_path)
    assert portable.private_dir(name) is None
    place.unlink()
    place.mkdir(mode=0o700)
    if os.getuid() != 0:
        pytest.skip("only root can give a folder to someone else")
    os.chown(place, os.getuid() + 1, -1)
    assert portable.private_dir(name) is None


def test_private_dir_without_getuid_is_in_local_app_data(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delattr(os, "getuid")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path))
    assert portable.private_dir(name) == tmp_path / name
    assert (tmp_path / name).is_dir()


def test_the_descriptor_limit_is_lifted_as_far_as_asked() -> None:
    probe = textwrap.dedent(
        """
        import resource
        from flags2 import portable
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        print(portable.open_file_limit(), portable.raise_open_file_limit(300),
              portable.raise_open_file_limit(200), hard)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    before, asked, lower, hard = (int(n) for n in done.stdout.split())
    assert (before, asked, lower) == (256, min(300, hard), min(300, hard))


def test_without_resource_there_is_no_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(portable, "resource", None)
    assert portable.open_file_limit() is None
    assert portable.raise_open_file_limit(1000) is None


def test_detached_starts_a_session_of_its_own() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getsid(0))"],
        capture_output=True,
        text=True,
        check=True,
        **portable.detached(),
    )
    assert int(done.stdout) != os.getsid(0)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="no /proc here")
def test_thread_count_sees_threads_that_threading_never_saw() -> None:
    import _thread
    import threading
    import time

    before = portable.thread_count()
    held = threading.Lock()
    held.acquire()
    ended = threading.Lock()
    ended.acquire()

    def wait() -> None:  # as the bundled servers' handler threads wait
        with held:
            ended.release()

    _thread.start_new_thread(wait, ())
    deadline = time.monotonic() + 5
    while portable.thread_count() == before and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        assert portable.thread_count() == before + 1
        assert portable.thread_count() > threading.active_count()
    finally:
        held.release()
        assert ended.acquire(timeout=5)


def test_without_proc_thread_count_is_threading_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    def no_proc(path: str) -> list[str]:
        raise FileNotFoundError(errno.ENOENT, "no such folder", path)

    monkeypatch.setattr(os, "listdir", no_proc)
    assert portable.thread_count() == threading.active_count()


def test_readable_now_tells_idle_from_bytes_and_from_the_end() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert portable.readable_now(ours.fileno()) is False
        theirs.sendall(b"x")
        assert portable.readable_now(ours.fileno()) is True
        assert ours.recv(1) == b"x"
        assert portable.readable_now(ours.fileno()) is False
        theirs.close()
        assert portable.readable_now(ours.fileno()) is True  # the end: EOF


def test_without_poll_readable_now_says_it_cannot_tell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import select

    monkeypatch.delattr(select, "poll")
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b"x")
        assert portable.readable_now(ours.fileno()) is None


@LINUX_ONLY
def test_kernel_timeout_bounds_a_blocking_receive_and_a_blocking_send() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert ours.gettimeout() is None  # blocking: no poll before each call
        assert portable.kernel_timeout(ours, send=False, seconds=0.2)
        started = time.monotonic()
        with pytest.raises(BlockingIOError):
            ours.recv(1)  # nothing comes: the kernel ends the wait
        assert 0.15 < time.monotonic() - started < 5
        assert portable.kernel_timeout(ours, send=True, seconds=0.2)
        with pytest.raises(BlockingIOError):
            while True:  # nobody reads: the buffers fill, then the bound ends it
                ours.send(bytes(65536))
        assert kernel_bound(ours, socket.SO_SNDTIMEO) == (0, 200_000)


@LINUX_ONLY
def test_kernel_timeout_none_is_no_bound_and_a_tiny_one_is_not_none() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert portable.kernel_timeout(ours, send=False, seconds=2.5)
        assert kernel_bound(ours, socket.SO_RCVTIMEO) == (2, 500_000)
        assert portable.kernel_timeout(ours, send=False, seconds=None)
        assert kernel_bound(ours, socket.SO_RCVTIMEO) == (0, 0)  # 0 means: wait forever
        assert portable.kernel_timeout(ours, send=False, seconds=1e-9)
        assert kernel_bound(ours, socket.SO_RCVTIMEO) != (0, 0)


def test_kernel_timeout_where_its_form_is_unknown_sets_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(portable, "_TIMEVAL", None)  # as on Windows
    ours, theirs = socket.socketpair()
    with ours, theirs:
        before = ours.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
        assert portable.kernel_timeout(ours, send=False, seconds=0.2) is False
        assert ours.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16) == before
    monkeypatch.undo()
    monkeypatch.delattr(socket, "SO_SNDTIMEO")  # a system without the option
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert portable.kernel_timeout(ours, send=True, seconds=0.2) is False


def test_memory_dir_is_linuxs_tmpfs_when_it_can_be_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(portable, "_MEMORY_DIR", str(tmp_path))
    monkeypatch.setattr(sys, "platform", "linux")
    assert portable.memory_dir() == str(tmp_path)
    monkeypatch.setattr(portable, "_MEMORY_DIR", str(tmp_path / "none"))
    assert portable.memory_dir() is None  # no such folder: the usual temp
    monkeypatch.setattr(portable, "_MEMORY_DIR", str(tmp_path))
    with monkeypatch.context() as read_only:
        read_only.setattr(os, "access", lambda path, mode: False)
        assert portable.memory_dir() is None
    for system in ("darwin", "win32"):
        monkeypatch.setattr(sys, "platform", system)
        assert portable.memory_dir() is None


def test_kernel_timeout_the_kernel_refuses_sets_nothing_and_says_so() -> None:
    # A 32-bit build whose time_t is 64 bits takes another form: EINVAL.
    class Refusing(socket.socket):
        def setsockopt(self, *args: Any) -> None:
            raise OSError(errno.EINVAL, "Invalid argument")

    with Refusing() as sock:
        assert portable.kernel_timeout(sock, send=False, seconds=0.2) is False
        assert portable.kernel_timeout(sock, send=True, seconds=1e30) is False
