"""flags2 without the POSIX-only parts, as on Windows: every promise still kept.

Each command runs in a child Python whose ``sitecustomize`` hides ``fcntl``,
``resource``, ``select.poll``, ``os.fchmod``, ``os.O_NOFOLLOW``, ``os.wait4``,
``os.getuid`` and the kernel's socket timeouts (``SO_RCVTIMEO``, ``SO_SNDTIMEO``)
before flags2 is imported (`tests.helpers.env_without_posix`),
and so does every Python those commands start: the bundled server, the bench's
runs. What is checked: a download in every mode, ``--skip-existing`` and the
sweep of a stale temporary, the bundled server shared by two concurrent runs,
and ``flags2 bench``.
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
from collections.abc import Iterator
from pathlib import Path

import pytest

from flags2.servers.launch import background, is_listening
from tests.helpers import ABSENT, MODES, env_without_posix, leftovers


@pytest.fixture(scope="module")
def local_url() -> Iterator[str]:
    with background(["local"]) as running:
        yield running.urls["local"]


def _flags2(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flags2", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_children_really_lack_them(tmp_path: Path) -> None:
    probe = textwrap.dedent(
        f"""
        import importlib, json
        present = []
        for name in {ABSENT!r}:
            module, _, attribute = name.partition(".")
            try:
                mod = importlib.import_module(module)
            except ImportError:
                continue
            if not attribute or hasattr(mod, attribute):
                present.append(name)
        print(json.dumps(present))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=env_without_posix(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout) == []


@pytest.mark.parametrize("mode", MODES)
def test_download_skip_existing_and_the_sweep(
    local_url: str, tmp_path: Path, mode: str
) -> None:
    env = env_without_posix(tmp_path)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / ".BR.gif.k2j4x9ab.part").write_bytes(b"GIF89a half")  # a kill -9's
    common = ["download", "-a", "-l", "20", "--mode", mode, "-s", local_url]
    common += ["-d", str(dest), "--no-serve"]
    first = _flags2(env, *common)
    assert first.returncode == 0, first.stdout + first.stderr
    assert " 20 flags downloaded." in first.stdout
    assert leftovers(dest) == []  # swept, and no temporary of its own left
    again = _flags2(env, *common, "--skip-existing")
    assert again.returncode == 0, again.stderr
    assert " 20 flags skipped (already saved)." in again.stdout


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


def test_the_bundled_server_is_shared_by_two_runs(tmp_path: Path) -> None:
    env = env_without_posix(tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])

    def download(name: str) -> subprocess.Popen[str]:
        dest = tmp_path / name
        args = ["-a", "-m", "1000", "-d", str(dest), "--json", str(dest / "r.json")]
        dest.mkdir()
        return subprocess.Popen(
            [sys.executable, "-c", _DOWNLOAD, str(port), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    first = download("a")
    second = None
    try:
        assert first.stderr is not None
        assert "so the bundled DELAY server" in first.stderr.readline()
        second = download("b")
        assert second.stdout is not None
        assert second.stdout.readline().startswith("DELAY site:")
        time.sleep(0.5)  # B's requests are in flight when its starter leaves
        os.killpg(first.pid, signal.SIGINT)
        first.communicate(timeout=10)
        _, second_err = second.communicate(timeout=60)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:  # pragma: no cover
                proc.kill()
                proc.communicate()
    assert second.returncode == 0, second_err
    assert "bundled" not in second_err  # it joined the first run's server
    counts = json.loads((tmp_path / "b" / "r.json").read_text())["counts"]
    assert counts["OK"] == 194 and counts["ERROR"] == counts["CANCELLED"] == 0
    deadline = time.monotonic() + 5  # and it stops once both have gone
    while is_listening("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_listening("127.0.0.1", port)


def test_bench_runs_and_measures(tmp_path: Path) -> None:
    env = env_without_posix(tmp_path)
    out = tmp_path / "bench.json"
    done = _flags2(
        env, "bench", "BR", "CN", "--modes", "asyncio", "--servers", "local",
        "--repeat", "1", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [row] = json.loads(out.read_text())["rows"]
    assert row["counts"]["OK"] == 2 and row["median_wall"] > 0
    # CPU still counted (os.times of the waited-for run); the start-up's too.
    assert row["client_startup_cpu"] > 0
