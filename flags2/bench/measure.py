"""Run a command and measure it from outside: wall time, CPU time, own peak memory.

The obvious way, ``Popen`` then the child's rusage ``ru_maxrss`` on reaping,
measures the wrong process on Linux: ``exec`` folds the high-water mark of the
address space it replaces into the child's ``maxrss``, and Python spawns with
``vfork``, whose replaced address space is the parent's. From a 45 MiB bench,
``/bin/true`` would seem to need 45 MiB, and curl as much as flags2. So the
children are spawned and reaped by a tiny helper interpreter (``python -I -S``,
about 9 MiB), and that helper's footprint is the floor of what is measured::

    >>> devnull = Path(os.devnull)
    >>> with Spawner() as spawner:
    ...     m = spawner.run(["true"], env={}, stdout=devnull, stderr=devnull)
    >>> m.status, 5 < m.peak_rss_mib < 15  # about 9 MiB: the helper's own
    (0, True)

The helper ignores Ctrl-C (the bench decides); the child gets SIGINT as usual.

Where that rusage is missing (`flags2.portable.CAN_WAIT4`, Windows), the helper
starts each command with
`subprocess.Popen` and samples it through psutil (installed there with
flags2): its peak working set and CPU time. Without psutil the CPU time is
still known where ``os.times`` counts waited-for children (POSIX), and the
peak memory is recorded as 0: not known.
The helper ignores Ctrl-C (the bench decides, and passes SIGINT on to the
child). It runs in a process group of its own with the commands it starts,
and if the bench dies without a word (SIGKILL), the kernel tells the helper
(`flags2.portable.die_with_parent`, Linux) and it kills that group: no command
outlives the bench.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from flags2 import portable

__all__ = ["Measured", "Spawner"]

_GRACE = 2.0  # seconds a child gets to stop after Ctrl-C before SIGKILL
# Windows has no SIGKILL; os.kill ends a process there whatever the signal.
_KILL = getattr(signal, "SIGKILL", signal.SIGTERM)


# The protocol of portable.MEASURING_HELPER through subprocess and psutil, for
# where a reaped child's rusage is missing. Not -S: psutil is in site-packages.
_SAMPLING_HELPER = """\
import json, os, signal, subprocess, sys, time
try:
    import psutil
except ImportError:
    psutil = None
# A handler, which exec resets: children start with SIGINT's default, unless
# it was ignored, as the bench got it.
if signal.getsignal(signal.SIGINT) != signal.SIG_IGN:
    signal.signal(signal.SIGINT, lambda signum, frame: None)

def sample(watched, peak, cpu):
    mem, times = watched.memory_info(), watched.cpu_times()
    peak = max(peak, getattr(mem, "peak_wset", mem.rss))
    return peak, max(cpu, times.user + times.system)

for line in sys.stdin:
    job = json.loads(line)
    t0, before = time.perf_counter(), os.times()
    try:
        with open(job["stdout"], "wb") as out, open(job["stderr"], "wb") as err:
            proc = subprocess.Popen(job["argv"], env=job["env"], stdout=out,
                                    stderr=err, stdin=subprocess.DEVNULL)
    except OSError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        continue
    print(json.dumps({"pid": proc.pid}), flush=True)
    peak = cpu = 0.0
    watched = psutil.Process(proc.pid) if psutil is not None else None
    while True:
        try:
            status = proc.wait(timeout=None if watched is None else 0.02)
            break
        except subprocess.TimeoutExpired:
            try:
                peak, cpu = sample(watched, peak, cpu)
            except psutil.Error:
                watched = None
    wall = time.perf_counter() - t0
    after = os.times()
    waited = (after.children_user - before.children_user
              + after.children_system - before.children_system)
    print(json.dumps({"status": status, "wall": wall, "peak_mib": peak / 2**20,
                      "cpu": max(cpu, waited)}), flush=True)
"""


@dataclass(frozen=True, slots=True)
class Measured:
    """How one command went, seen from outside."""

    status: int
    """Exit status; minus the signal number if a signal ended it."""
    wall: float
    """Seconds from spawn to exit: start-up and shutdown included."""
    peak_rss_mib: float
    """The command's own peak resident memory, MiB (never below the helper's)."""
    cpu_seconds: float = 0.0
    """User plus system CPU time of the command (and of any children it waited for)."""


def _mib(maxrss: int) -> float:
    # ru_maxrss is in KiB on Linux and the BSDs, in bytes on macOS.
    return maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


class Spawner:
    """A helper process that runs commands one at a time and measures each."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Spawner:
        helper = (
            ["-S", "-c", portable.MEASURING_HELPER]
            if portable.CAN_WAIT4
            else ["-c", _SAMPLING_HELPER]
        )
        # A group of its own, which the commands join (the helper's spawn keeps it),
        # so the helper's SIGTERM handler can end them all in one call; the
        # terminal's Ctrl-C then reaches the bench alone, which passes it on.
        self._proc = subprocess.Popen(
            [sys.executable, "-I", *helper],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            process_group=0,
            preexec_fn=portable.die_with_parent(signal.SIGTERM),
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        stdout: Path,
        stderr: Path,
    ) -> Measured:
        """Run `argv` to completion, its output going to the two files.

        Raises OSError if the command cannot be started (not found, say).
        """
        job = {"argv": list(argv), "env": dict(env),
               "stdout": str(stdout), "stderr": str(stderr)}  # fmt: skip
        self._send(job)
        started = self._receive()
        if "error" in started:
            raise OSError(started["error"])
        pid = int(started["pid"])
        try:
            done = self._receive()
        except BaseException:  # Ctrl-C: the child must not outlive us
            self._abandon(pid)
            raise
        peak = done["peak_mib"] if "peak_mib" in done else _mib(done["maxrss"])
        return Measured(
            int(done["status"]), float(done["wall"]), float(peak), float(done["cpu"])
        )

    def _send(self, job: dict[str, Any]) -> None:
        if self._proc is None or self._proc.stdin is None:
            raise RuntimeError("Spawner used outside its with block")
        self._proc.stdin.write(json.dumps(job) + "\n")
        self._proc.stdin.flush()

    def _receive(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the measuring helper process died")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def _abandon(self, pid: int) -> None:
        # The child is in the helper's process group, which no Ctrl-C reaches
        # (the terminal's goes to the bench's group): pass it on, then insist.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        if not self._close():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, _KILL)
            self._kill()

    def _close(self) -> bool:
        """Let the helper finish (EOF on its stdin); False if it did not in time."""
        proc = self._proc
        if proc is None:
            return True
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=_GRACE)
        except subprocess.TimeoutExpired:
            return False
        self._finish()
        return True

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._finish()

    def _finish(self) -> None:
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None
