"""A shared bundled server belongs to no run's process group, terminal or TMPDIR.

Run A starts DELAY, run B joins it, then A's whole process group gets what a
closed terminal (SIGHUP), ``timeout`` or a service manager (SIGTERM), or a
Ctrl-C (SIGINT) sends. B must lose nothing, and the server must stop once B
is done. Both are real ``flags2 download -s DELAY -a`` runs, in sessions of
their own so their groups can be signalled; DELAY's port is one the test
picks, put in place of 8001 before the command line is parsed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flags2.servers.launch import is_listening
from flags2.servers.lease import AVAILABLE, lease_path

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="needs leases")

_DOWNLOAD = textwrap.dedent(
    """
    import sys
    from flags2 import settings
    port, *argv = sys.argv[1:]
    settings.SERVERS["DELAY"] = f"http://localhost:{port}/flags"
    from flags2.cli import main
    sys.argv = ["flags2", "download", "-s", "DELAY", *argv]
    main()
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _download(port: int, dest: Path, tmpdir: Path) -> subprocess.Popen[str]:
    dest.mkdir()
    tmpdir.mkdir(exist_ok=True)
    args = ["-a", "-m", "1000", "-d", str(dest), "--json", str(dest / "run.json")]
    return subprocess.Popen(
        [sys.executable, "-c", _DOWNLOAD, str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmpdir)},
        start_new_session=True,  # its own group, as a terminal's job
    )


def _counts(dest: Path) -> dict[str, int]:
    record = json.loads((dest / "run.json").read_text())
    counts: dict[str, int] = record["counts"]
    return counts


@pytest.mark.parametrize(
    ("signum", "same_tmpdir"),
    [(signal.SIGHUP, True), (signal.SIGTERM, True), (signal.SIGINT, False)],
    ids=["SIGHUP", "SIGTERM", "SIGINT-other-TMPDIR"],
)
def test_a_signal_to_the_starters_group_costs_the_joiner_nothing(
    tmp_path: Path, signum: int, same_tmpdir: bool
) -> None:
    port = _free_port()
    first = _download(port, tmp_path / "a", tmp_path / "tmp-a")
    other = tmp_path / ("tmp-a" if same_tmpdir else "tmp-b")
    second = None
    try:
        assert first.stderr is not None
        assert "so the bundled DELAY server" in first.stderr.readline()
        second = _download(port, tmp_path / "b", other)
        assert second.stdout is not None
        # Its first report line comes once it holds the lease and the server.
        assert second.stdout.readline().startswith("DELAY site:")
        time.sleep(0.5)  # B's 194 requests are in flight, each 0.5-5 s
        os.killpg(first.pid, signum)
        first.communicate(timeout=10)
        _, second_err = second.communicate(timeout=60)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:  # pragma: no cover
                proc.kill()
                proc.communicate()
    assert "bundled" not in second_err  # B used A's server, not one of its own
    assert second.returncode == 0, second_err
    counts = _counts(tmp_path / "b")
    assert counts["OK"] == 194 and counts["ERROR"] == 0 and counts["CANCELLED"] == 0
    deadline = time.monotonic() + 5  # no orphan once B is gone
    while is_listening("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_listening("127.0.0.1", port)


def test_the_lease_file_does_not_follow_tmpdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    here = lease_path(8001)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    assert lease_path(8001) == here is not None
    assert tmp_path not in here.parents
    folder = os.lstat(here.parent)
    assert folder.st_uid == os.getuid() and folder.st_mode & 0o777 == 0o700


def test_a_leased_server_signalled_itself_stops_only_when_unused(
    tmp_path: Path,
) -> None:
    # A SIGTERM or SIGHUP to the server's own pid means "your starter has
    # gone": it stops once no run holds the lease, never under one.
    from flags2.servers.launch import shared

    port = _free_port()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == "held\n"
        with shared("local", port=port) as started:
            assert started is not None
            os.kill(started.pid, signal.SIGTERM)
            os.kill(started.pid, signal.SIGHUP)
            time.sleep(0.5)
            assert is_listening("127.0.0.1", port, timeout=2)  # both runs hold it
        time.sleep(0.5)
        assert is_listening("127.0.0.1", port, timeout=2)  # the other still does
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=10)
        deadline = time.monotonic() + 5
        while is_listening("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not is_listening("127.0.0.1", port)
    finally:
        if holder.poll() is None:  # pragma: no cover - only on failure
            holder.kill()
            holder.wait()
        for stream in (holder.stdin, holder.stdout):
            if stream is not None and not stream.closed:
                stream.close()


# A run holding the lease of a port before anything listens there: it joins
# the server the test starts next, as a second terminal's run would.
_HOLD = textwrap.dedent(
    """
    import sys
    from flags2.servers.lease import Lease, lease_path
    lease = Lease(lease_path(int(sys.argv[1])))
    assert lease.share(timeout=5)
    print("held", flush=True)
    sys.stdin.readline()
    """
)
