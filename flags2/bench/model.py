"""What a bench is made of: code sets, cells, settings, runs and table rows.

A `Cell` is one row of the table (a mode on a server at a ``-m`` over a code
set); each of its `Run` objects is one child process, measured from outside;
a `Row` holds a cell's runs and derives every figure the table and ``--json``
show from them (medians, efficiency, CPU).
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flags2.bench.defaults import DEFAULT_REPEAT
from flags2.bench.ideal import IdealRun
from flags2.runner import EXIT_ERRORS, EXIT_OK
from flags2.servers.options import ServerOptions
from flags2.settings import DEFAULT_TIMEOUT

__all__ = [
    "ARIA2C",
    "CPU_BOUND_SHARE",
    "CURL",
    "PEERS",
    "BenchSettings",
    "Cell",
    "CodeSet",
    "Row",
    "Run",
]

CURL = "curl"
"""The ``--modes`` entry that runs curl (with ``--url`` only)."""
ARIA2C = "aria2c"
"""The ``--modes`` entry that runs aria2c (with ``--url`` only)."""
PEERS = (CURL, ARIA2C)
"""Other programs that can join a bench as rows of their own."""
# A cell whose client and server together kept this share of the machine's
# cores busy was waiting for CPU, not for the network: its efficiency says so.
CPU_BOUND_SHARE = 0.75
_RESOLUTION = 0.0001  # s per request: the table's 0.1 ms


@dataclass(frozen=True, slots=True)
class CodeSet:
    """One set of country codes, as a ``download`` command line would give it."""

    label: str
    """How the table names it: ``POP20``, ``-a``, ``-e``, ``B C -l 30``."""
    args: tuple[str, ...]
    """What the child ``flags2 download`` is given to pick these codes."""
    codes: tuple[str, ...]
    """The codes themselves, sorted: the order every mode submits them in."""


@dataclass(frozen=True, slots=True)
class Cell:
    """One row of the table: a mode on a server at a -m over a code set."""

    mode: str
    server: str
    """A bundled server kind (``delay``...) or ``url`` for ``--url``."""
    max_req: int
    """The -m asked for."""
    codes: CodeSet
    concurrency: int
    """The -m actually used: capped by the mode and by the number of codes."""
    http: str | None = None
    """``--http``: ``"1.1"`` (the download's ``--http1.1``), ``"2"``, or None
    for the program's own default."""

    @property
    def is_peer(self) -> bool:
        """True for a row run by another program (curl, aria2c)."""
        return self.mode in PEERS


@dataclass(frozen=True, slots=True)
class BenchSettings:
    """Everything one ``flags2 bench`` needs, checked by the command line."""

    cells: tuple[Cell, ...]
    server: ServerOptions
    """Delays and faults of the bundled servers; its seed is always set."""
    repeat: int = DEFAULT_REPEAT
    retries: int = 0
    timeout: float = DEFAULT_TIMEOUT
    url: str | None = None
    """Base URL of an external server; then no bundled server starts."""
    json_path: Path | None = None
    plot_path: Path | None = None

    @property
    def seed(self) -> int:
        assert self.server.seed is not None
        return self.server.seed


@dataclass(frozen=True, slots=True)
class Run:
    """One run of one cell, as measured from outside the child."""

    record: dict[str, Any]
    """The child's own ``download --json`` object (for a peer, a stand-in)."""
    wall: float
    peak_rss_mib: float
    exit_status: int
    server_stats: dict[str, Any] | None = None
    stderr: str = ""
    client_cpu: float | None = None
    """User + system CPU seconds of the whole child process (start-up included)."""
    server_cpu: float | None = None
    """CPU seconds the server spent during the run (None if it cannot tell)."""

    @property
    def elapsed(self) -> float:
        return float(self.record["elapsed"])

    @property
    def counts(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.record["counts"].items()}

    @property
    def cpu_load(self) -> float | None:
        """Cores kept busy on average: client plus server CPU over the wall time."""
        if self.client_cpu is None or self.wall <= 0:
            return None
        return (self.client_cpu + (self.server_cpu or 0.0)) / self.wall

    @property
    def tree_rss_mib(self) -> float:
        """Peak memory of the whole process tree, MiB.

        For a process pool, the parent's own peak plus each worker's (its
        ``--json`` ``pool`` figures): a sum of peaks. The rusage of a waited
        child gives only the largest of its descendants, which would hide the
        very cost a pool adds. Other programs are one process, measured.
        """
        pool = self.record.get("pool")
        if not pool:
            return self.peak_rss_mib
        own = max(float(pool["parent_peak_rss_mib"]), 0.0) or self.peak_rss_mib
        return own + float(pool["workers_peak_rss_mib"])

    @property
    def connections(self) -> int | None:
        """Connections the run's answers came on, where its program tells."""
        value = self.record.get("connections")
        return None if value is None else int(value)

    @property
    def http_versions(self) -> set[str]:
        """The protocols the run's answers came over (``HTTP/2``...)."""
        if "http_versions" in self.record:  # a peer's stand-in says so itself
            return set(self.record["http_versions"])
        return {f["http_version"] for f in self.record["flags"] if f["http_version"]}

    @property
    def startup(self) -> float:
        """Seconds not spent downloading at the start: the interpreter, imports
        and exit (wall minus elapsed), plus a pool's wait for its last worker."""
        pool = self.record.get("pool") or {}
        return max(0.0, self.wall - self.elapsed) + float(pool.get("startup") or 0.0)


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


@dataclass(slots=True)
class Row:
    """A cell and its runs, with everything the table and ``--json`` show."""

    cell: Cell
    runs: list[Run] = field(default_factory=list)
    ideal: IdealRun | None = None
    speedup: float | None = None
    vs_peer: dict[str, float] = field(default_factory=dict)
    """This row's wall time over each peer's (curl, aria2c) on the same codes."""
    startup_cpus: list[float] = field(default_factory=list)
    """Client CPU its program spends whatever it fetches (start-up, exit): one
    figure per repeat (at least three), measured between the runs so that
    noise hits both alike."""

    @property
    def startup_cpu(self) -> float | None:
        """The median of `startup_cpus`: what `cpu_per_request` leaves out."""
        return statistics.median(self.startup_cpus) if self.startup_cpus else None

    @property
    def startup_noise(self) -> float:
        """How far the start-up's CPU strays from run to run (max - min)."""
        if not self.startup_cpus:
            return 0.0
        return max(self.startup_cpus) - min(self.startup_cpus)

    def client_cpu_below_noise(self) -> float | None:
        """The client CPU per request that `cpu_per_request` cannot resolve.

        None when the client's per-request CPU stands clear of the start-up's
        run-to-run spread; otherwise the bound (seconds per request) below
        which it lies, so a table says ``<0.8`` rather than a false ``0.0``.
        """
        client, floor = self.client_cpu, self.startup_cpu
        if client is None or floor is None:
            return None
        n = len(self.cell.codes.codes)
        if client - floor > self.startup_noise:
            return None
        # The true figure lies within the spread of what was left out.
        return max(max(0.0, client - floor) + self.startup_noise, _RESOLUTION * n) / n

    @property
    def connections(self) -> int | None:
        """Median connections a run used, when its program tells."""
        known = [run.connections for run in self.runs if run.connections is not None]
        return int(statistics.median_low(known)) if known else None

    @property
    def http_versions(self) -> list[str]:
        """Every protocol the row's answers came over, sorted."""
        return sorted(set().union(*(run.http_versions for run in self.runs)))

    @property
    def median_elapsed(self) -> float:
        return statistics.median(run.elapsed for run in self.runs)

    @property
    def median_wall(self) -> float:
        return statistics.median(run.wall for run in self.runs)

    @property
    def counts(self) -> dict[str, int]:
        # The runs share one plan, so their counts agree unless something broke;
        # when they differ, the row shows its worst run.
        worst = max(self.runs, key=lambda run: run.counts.get("ERROR", 0))
        return worst.counts

    @property
    def expected_errors(self) -> int:
        """Errors the plan makes unavoidable (0 without a plan)."""
        return self.ideal.errors if self.ideal is not None else 0

    @property
    def unexpected(self) -> bool:
        """True if a run failed beyond what the plan predicts, or crashed."""
        return any(
            run.exit_status not in (EXIT_OK, EXIT_ERRORS)
            or run.counts.get("ERROR", 0) > self.expected_errors
            or run.counts.get("CANCELLED", 0) > 0
            for run in self.runs
        )

    @property
    def efficiency(self) -> float | None:
        if self.ideal is None or self.ideal.elapsed <= 0 or not self.runs:
            return None
        return self.ideal.elapsed / self.median_elapsed

    @property
    def peak_in_flight(self) -> int | None:
        peaks = [
            int(run.server_stats["peak_in_flight"])
            for run in self.runs
            if run.server_stats is not None
        ]
        return max(peaks) if peaks else None

    @property
    def faults(self) -> int | None:
        """Faults the server injected in the row's worst run."""
        if self.cell.server != "error":
            return None
        injected = [
            sum(run.server_stats["faults"].values())
            for run in self.runs
            if run.server_stats is not None
        ]
        return max(injected) if injected else None

    @property
    def peak_rss_mib(self) -> float:
        return max(run.tree_rss_mib for run in self.runs)

    @property
    def median_startup(self) -> float:
        return statistics.median(run.startup for run in self.runs)

    @property
    def client_cpu(self) -> float | None:
        """Median CPU seconds of the client's process."""
        return _median([run.client_cpu for run in self.runs])

    @property
    def server_cpu(self) -> float | None:
        """Median CPU seconds the server spent on a run."""
        return _median([run.server_cpu for run in self.runs])

    def cpu_per_request(self) -> tuple[float | None, float | None]:
        """Median client and server CPU seconds per code requested.

        The client's leaves out its `startup_cpu` when known: a Python child
        spends about 0.1 s starting, which would swamp 20 requests.
        """
        n = len(self.cell.codes.codes)
        client, server = self.client_cpu, self.server_cpu
        if client is not None:
            client = max(0.0, client - (self.startup_cpu or 0.0))
        return (
            None if client is None else client / n,
            None if server is None else server / n,
        )

    @property
    def cpu_load(self) -> float | None:
        """Median cores kept busy by client and server together during a run."""
        return _median([run.cpu_load for run in self.runs])

    def cpu_bound(self, cores: int | None = None) -> bool:
        """True if client and server kept nearly every core busy."""
        load = self.cpu_load
        cores = cores or os.cpu_count() or 1
        return load is not None and load >= CPU_BOUND_SHARE * cores

    def median_run(self) -> Run:
        """The run whose elapsed is the median: the one a timeline shows."""
        ordered = sorted(self.runs, key=lambda run: run.elapsed)
        return ordered[(len(ordered) - 1) // 2]
