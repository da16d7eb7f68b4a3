"""Running a bench: a fresh server and a measured child process per run.

Every run of every cell gets a freshly started bundled server with the same
seed, so every mode faces exactly the same delays and faults, and the ideal
time of each run is known in advance (:mod:`flags2.bench.ideal`). Within each
repeat the cells run one after the other (A, B, C, A, B, C...), so noise on a
busy machine hits every cell alike.

How each run is measured:

* ``elapsed`` is the download's own time (what ``flags2 download`` prints),
  ``wall`` the whole child process, interpreter start-up and imports included;
* the client's CPU (user + system) and peak memory come from the child's own
  rusage as it is reaped, taken by the small helper of :mod:`flags2.bench.measure`
  (from the bench itself they would include the bench's own);
* the server's CPU is the rise of its ``/_stats`` ``cpu_seconds`` from just
  before the child starts to just after it ends, so the server's own start-up
  is left out; its peak in flight comes from the same ``/_stats``, the server
  being fresh, that is this run's peak, not the server's lifetime's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import ssl
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import flags2
from flags2.bench import peers
from flags2.bench.ideal import IdealRun, ideal_run
from flags2.bench.matrix import base_mode
from flags2.bench.measure import Spawner
from flags2.bench.model import BenchSettings, Cell, CodeSet, Run
from flags2.runner import EXIT_ERRORS, EXIT_OK
from flags2.servers import tls
from flags2.servers.launch import background
from flags2.servers.options import describe_faults

__all__ = ["child_env", "ideal_of", "run_once", "server_cpu", "startup_cpu"]

_STATS_TIMEOUT = 5.0


def _stats_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}/_stats"


def _read_stats(base_url: str, ca_file: Path | None = None) -> dict[str, Any] | None:
    # The TLS server's certificate is its own CA's: trust that one for this.
    context = None if ca_file is None else ssl.create_default_context(cafile=ca_file)
    url = _stats_url(base_url)
    try:
        with urllib.request.urlopen(url, timeout=_STATS_TIMEOUT, context=context) as r:
            data: dict[str, Any] = json.load(r)
            return data
    except (OSError, ValueError):  # not our server, or gone: no figures
        return None


def server_cpu(
    before: dict[str, Any] | None, after: dict[str, Any] | None
) -> float | None:
    """CPU seconds the server spent between two ``/_stats`` snapshots."""
    if before is None or after is None:
        return None
    try:
        spent = float(after["cpu_seconds"]) - float(before["cpu_seconds"])
    except (KeyError, TypeError, ValueError):  # a server without the field
        return None
    return max(0.0, spent)


@contextlib.contextmanager
def _server(
    cell: Cell, settings: BenchSettings, folder: Path
) -> Iterator[tuple[str, Path | None]]:
    """Yield the base URL to hit (a fresh bundled server, or ``--url``) and the
    CA file that the TLS server's certificate needs trusted (None otherwise)."""
    if settings.url is not None:
        yield settings.url, None
        return
    opts = settings.server
    delays = [
        "--seed", str(settings.seed),
        "--min-delay", repr(opts.min_delay), "--max-delay", repr(opts.max_delay),
    ]  # fmt: skip
    if cell.server == tls.KIND:
        ca_file = folder / "ca.pem"
        with tls.background(delays, ca_file) as url:
            yield url, ca_file
        return
    args = [
        *delays,
        "--error-rate", repr(opts.error_rate), "--faults", describe_faults(opts.faults),
        "--stall", repr(opts.stall),
    ]  # fmt: skip
    with background([cell.server], args=args) as running:
        yield running.urls[cell.server], None


def child_env() -> dict[str, str]:
    """The environment of a child: this very flags2 first on its path."""
    # The child must import this very flags2 (even from an uninstalled checkout).
    root = str(Path(flags2.__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def _download_command(
    cell: Cell, settings: BenchSettings, base_url: str, dest: Path, record: Path
) -> list[str]:
    mode, options = base_mode(cell.mode)
    if cell.http == "1.1":
        options = [*options, "--http1.1"]
    return [
        sys.executable, "-P", "-m", "flags2", "download", *cell.codes.args,
        "--mode", mode, *options, "-m", str(cell.max_req), "-s", base_url, "--no-serve",
        "--json", str(record), "-d", str(dest),
        "--retries", str(settings.retries), "--timeout", repr(settings.timeout),
    ]  # fmt: skip


def _crashed_record(cell: Cell, wall: float) -> dict[str, Any]:
    """What a child that died before writing its record counts as."""
    n = len(cell.codes.codes)
    counts = {"OK": 0, "NOT_FOUND": 0, "ERROR": n, "CANCELLED": 0, "SKIPPED": 0}
    return {"mode": cell.mode, "elapsed": wall, "counts": counts, "flags": []}


def run_once(cell: Cell, settings: BenchSettings, work: Path, spawner: Spawner) -> Run:
    """Run `cell` once in a child process, in a fresh folder under `work`."""
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        folder = Path(scratch)
        dest, record_path = folder / "dest", folder / "run.json"
        out, err = folder / "stdout", folder / "stderr"
        dest.mkdir()
        with _server(cell, settings, folder) as (base_url, ca_file):
            if cell.is_peer:
                command = peers.command(cell, base_url, dest, folder)
            else:
                command = _download_command(cell, settings, base_url, dest, record_path)
            env = child_env()
            if ca_file is not None:
                env["SSL_CERT_FILE"] = str(ca_file)
            before = _read_stats(base_url, ca_file)
            measured = spawner.run(command, env=env, stdout=out, stderr=err)
            after = _read_stats(base_url, ca_file)
        status, wall = measured.status, measured.wall
        stdout = out.read_text(errors="replace")
        stderr = err.read_text(errors="replace").strip()
        if cell.is_peer:
            record = peers.peer_record(cell, base_url, wall, stdout)
            status = EXIT_ERRORS if record["counts"]["ERROR"] else EXIT_OK
        elif record_path.exists():
            record = json.loads(record_path.read_text(encoding="utf-8"))
        else:
            record = _crashed_record(cell, wall)
    # An external server's counters span its whole life: only its CPU is ours.
    stats = after if settings.url is None else None
    return Run(
        record,
        wall,
        measured.peak_rss_mib,
        status,
        stats,
        stderr,
        client_cpu=measured.cpu_seconds,
        server_cpu=server_cpu(before, after),
    )


_FLOOR_CODES = CodeSet("BR", ("BR",), ("BR",))


def startup_cpu(
    cell: Cell, settings: BenchSettings, work: Path, spawner: Spawner
) -> float | None:
    """The client CPU of `cell`'s program that is not per request: its floor.

    The same program asks for one flag from a port that refuses at once
    (bound, never listening), so what it spends is start-up, imports and exit;
    over https when the bench's URL is, so that its TLS set-up is left out too.
    """
    floor = dataclasses.replace(cell, codes=_FLOOR_CODES, max_req=1, concurrency=1)
    once = dataclasses.replace(settings, retries=0)
    with (
        socket.socket() as refusing,
        tempfile.TemporaryDirectory(dir=work) as scratch,
    ):
        refusing.bind(("127.0.0.1", 0))
        https = cell.server == tls.KIND or (settings.url or "").lower().startswith(
            "https:"
        )
        scheme = "https" if https else "http"
        base_url = f"{scheme}://127.0.0.1:{refusing.getsockname()[1]}/flags"
        folder = Path(scratch)
        dest = folder / "dest"
        dest.mkdir()
        if cell.is_peer:
            command = peers.command(floor, base_url, dest, folder)
        else:
            command = _download_command(floor, once, base_url, dest, folder / "r.json")
        try:
            measured = spawner.run(
                command, env=child_env(), stdout=folder / "out", stderr=folder / "err"
            )
        except OSError:  # the program is gone: no floor, the raw figure stands
            return None
    return measured.cpu_seconds


def ideal_of(cell: Cell, settings: BenchSettings) -> IdealRun | None:
    """The ideal of `cell`'s runs, or None if no seeded plan is known."""
    if settings.url is not None or cell.is_peer:
        return None
    return ideal_run(
        cell.codes.codes,
        kind=tls.PLAN_KIND if cell.server == tls.KIND else cell.server,
        options=settings.server,
        seed=settings.seed,
        concurrency=cell.concurrency,
        retries=settings.retries,
        timeout=settings.timeout,
    )
