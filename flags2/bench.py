"""``flags2 bench``: run a matrix of downloads, each in its own process, and compare.

Every run of every cell gets a freshly started bundled server with the same
seed, so every mode faces exactly the same delays and faults, and the ideal
time of each run is known in advance (:mod:`flags2.ideal`). A sample run (the
default demo on 2 cores)::

    $ flags2 bench --seed 7          # columns wall, peak and RSS MiB left out here
    flags2 bench: 5 cells x 3 runs; seed 7 (replay with --seed 7); delays 0.1-0.4 s...
    mode        server    -m  codes       OK/404/err  elapsed  speed-up  ideal   eff
    sequential  DELAY      1  POP20 (20)  20/0/0        5.08s      1.0x  5.03s  0.99
    threadpool  DELAY     30  POP20 (20)  20/0/0        0.40s     12.6x  0.37s  0.93
    asyncio     DELAY      5  POP20 (20)  20/0/0        1.24s      4.1x  1.21s  0.97
    threadpool  DELAY   1000  -e (676)    194/482/0     1.08s         -  0.40s  0.37
    asyncio     DELAY   1000  -e (676)    194/482/0     1.69s         -  0.40s  0.24
    ...
    sequential over -e on DELAY would take at least 165.7s

How each run is measured:

* ``elapsed`` is the download's own time (what ``flags2 download`` prints),
  ``wall`` the whole child process, interpreter start-up and imports included;
  efficiency is ideal / median elapsed, since the ideal knows nothing of
  start-up, while the ratio to curl (``--url`` with ``--modes ...,curl``) uses
  wall time, the only time curl has;
* the client's peak memory is the child's own ``ru_maxrss`` from ``os.wait4``,
  taken by the small helper of :mod:`flags2.measure` (from the bench itself it
  would include the bench's own memory);
* the server's peak in flight comes from its ``/_stats`` after the run; the
  server being fresh, that is this run's peak, not the server's lifetime's.

Within each repeat the cells run one after the other (A, B, C, A, B, C...), so
noise on a busy machine hits every cell alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from flags2 import __version__
from flags2.codes import POP20_CC, expand_cc_args
from flags2.ideal import IdealRun, ideal_run, makespan
from flags2.measure import Spawner
from flags2.runner import EXIT_ERRORS, EXIT_INTERRUPTED, EXIT_OK, MODES, load_mode
from flags2.settings import DEFAULT_TIMEOUT
from flags2.urls import redact
from servers.launch import LaunchError
from servers.options import SERVER_KINDS, ServerOptions, describe_faults

__all__ = [
    "CURL",
    "DEFAULT_MAX_DELAY",
    "DEFAULT_MIN_DELAY",
    "DEFAULT_REPEAT",
    "BenchSettings",
    "Cell",
    "CodeSet",
    "Row",
    "Run",
    "code_sets",
    "demo_cells",
    "format_table",
    "matrix",
    "parse_max_req",
    "parse_modes",
    "parse_servers",
    "run_bench",
]

CURL = "curl"
"""The extra ``--modes`` entry that runs curl (with ``--url`` only)."""
DEFAULT_REPEAT = 3
# Short delays keep the demo under a minute on 2 cores (20 sequential requests
# average 0.25 s each) while still dwarfing a request's cost on loopback.
DEFAULT_MIN_DELAY = 0.1
DEFAULT_MAX_DELAY = 0.4

_CURL_DEFAULT_M = 30  # the downloader issue compares with --parallel-max 30
_CURL_MAX_PARALLEL = 300  # curl silently caps --parallel-max there
_STATS_TIMEOUT = 5.0


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
    """The child's own ``download --json`` object (for curl, a stand-in)."""
    wall: float
    peak_rss_mib: float
    exit_status: int
    server_stats: dict[str, Any] | None = None
    stderr: str = ""

    @property
    def elapsed(self) -> float:
        return float(self.record["elapsed"])

    @property
    def counts(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.record["counts"].items()}


@dataclass(slots=True)
class Row:
    """A cell and its runs, with everything the table and ``--json`` show."""

    cell: Cell
    runs: list[Run] = field(default_factory=list)
    ideal: IdealRun | None = None
    speedup: float | None = None
    vs_curl: float | None = None

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
        return max(run.peak_rss_mib for run in self.runs)

    def median_run(self) -> Run:
        """The run whose elapsed is the median: the one a timeline shows."""
        ordered = sorted(self.runs, key=lambda run: run.elapsed)
        return ordered[(len(ordered) - 1) // 2]


# -- building the matrix --------------------------------------------------------


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_modes(text: str, *, url: str | None) -> list[str]:
    """``--modes``: a comma list of modes; ``curl`` too with ``--url``."""
    modes = [m.lower() for m in _split(text)]
    if not modes:
        raise ValueError("--modes: no mode given")
    for mode in modes:
        if mode == CURL and url is None:
            raise ValueError(
                "--modes curl needs --url: curl is compared on an external server"
            )
        if mode not in MODES and mode != CURL:
            raise ValueError(
                f"--modes: unknown mode {mode!r} (choose from"
                f" {', '.join(MODES)}; {CURL} with --url)"
            )
    return list(dict.fromkeys(modes))


def parse_servers(text: str) -> list[str]:
    """``--servers``: a comma list of local, delay, error."""
    kinds = [k.lower() for k in _split(text)]
    if not kinds:
        raise ValueError("--servers: no server given")
    for kind in kinds:
        if kind not in SERVER_KINDS:
            raise ValueError(
                f"--servers: unknown server {kind!r}"
                f" (choose from {', '.join(SERVER_KINDS)})"
            )
    return list(dict.fromkeys(kinds))


def parse_max_req(text: str) -> list[int]:
    """``--max-req``: a comma list of integers >= 1."""
    items = _split(text)
    if not items:
        raise ValueError("--max-req: no value given")
    values = []
    for item in items:
        try:
            value = int(item)
        except ValueError:
            raise ValueError(f"--max-req: {item!r} is not an integer") from None
        if value < 1:
            raise ValueError(f"--max-req: each value must be >= 1, not {value}")
        values.append(value)
    return list(dict.fromkeys(values))


def code_sets(
    cc: Sequence[str], all_cc: bool, every: bool, limit: int | None
) -> list[CodeSet]:
    """The code sets of the matrix: each of CC..., ``-a``, ``-e`` given is one.

    Unlike ``download``, where ``-e`` wins over ``-a`` and both over CC, a bench
    compares them: ``-a -e`` makes two rows per mode. Nothing given is POP20.
    Raises ValueError on a bad code.
    """
    tail = ("-l", str(limit)) if limit is not None else ()
    sets: list[tuple[str, tuple[str, ...], list[str]]] = []
    if cc:
        codes = expand_cc_args(False, False, cc, limit)
        sets.append((" ".join(c.upper() for c in cc), tuple(cc), codes))
    if all_cc:
        sets.append(("-a", ("-a",), expand_cc_args(False, True, [], limit)))
    if every:
        sets.append(("-e", ("-e",), expand_cc_args(True, False, [], limit)))
    if not sets:
        sets.append(("POP20", (), expand_cc_args(False, False, POP20_CC, limit)))
    return [
        CodeSet(" ".join([label, *tail]), args + tail, tuple(codes))
        for label, args, codes in sets
    ]


def _cell(mode: str, server: str, max_req: int | None, codes: CodeSet) -> Cell:
    if mode == CURL:
        requested = max_req or _CURL_DEFAULT_M
        cap = _CURL_MAX_PARALLEL
    else:
        module = load_mode(mode)
        requested = max_req or module.DEFAULT_CONCUR_REQ
        cap = module.MAX_CONCUR_REQ
        if cap == 1:
            requested = 1  # sequential: every -m is the same run
    concurrency = max(1, min(requested, cap, len(codes.codes)))
    return Cell(mode, server, requested, codes, concurrency)


def matrix(
    modes: Sequence[str],
    servers: Sequence[str],
    max_reqs: Sequence[int] | None,
    sets: Sequence[CodeSet],
) -> tuple[Cell, ...]:
    """Every combination, each mode at its default -m when `max_reqs` is None.

    Cells that would be the same run (sequential at any -m) appear once.
    """
    levels: list[int | None] = [*max_reqs] if max_reqs else [None]
    cells: dict[tuple[str, str, int, CodeSet], Cell] = {}
    for server in servers:
        for codes in sets:
            for mode in modes:
                for m in levels:
                    cell = _cell(mode, server, m, codes)
                    key = (mode, server, cell.concurrency, codes)
                    cells.setdefault(key, cell)
    return tuple(cells.values())


def demo_cells(servers: Sequence[str]) -> tuple[Cell, ...]:
    """The default matrix: the book's two lessons in one table.

    POP20 in every mode at its default -m (sequential, threadpool 30, asyncio
    5: the "five times faster" comparison, and how -m caps asyncio), then
    threadpool and asyncio over every code AA..ZZ at -m 1000 (676 requests at
    once, where sequential would take minutes).
    """
    pop20, every = (
        code_sets([], False, False, None)[0],
        code_sets([], False, True, None)[0],
    )
    cells: list[Cell] = []
    for server in servers:
        cells += [_cell(mode, server, None, pop20) for mode in MODES]
        cells += [
            _cell(mode, server, 1000, every) for mode in ("threadpool", "asyncio")
        ]
    return tuple(cells)


# -- running ---------------------------------------------------------------------


def _stats_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}/_stats"


def _read_stats(base_url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(_stats_url(base_url), timeout=_STATS_TIMEOUT) as r:
            data: dict[str, Any] = json.load(r)
            return data
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _server(cell: Cell, settings: BenchSettings) -> Iterator[str]:
    """Yield the base URL to hit: a fresh bundled server, or ``--url``."""
    if settings.url is not None:
        yield settings.url
        return
    from servers.launch import background

    opts = settings.server
    args = [
        "--seed", str(settings.seed),
        "--min-delay", repr(opts.min_delay), "--max-delay", repr(opts.max_delay),
        "--error-rate", repr(opts.error_rate), "--faults", describe_faults(opts.faults),
        "--stall", repr(opts.stall),
    ]  # fmt: skip
    with background([cell.server], args=args) as running:
        yield running.urls[cell.server]


def _child_env() -> dict[str, str]:
    # The child must import this very flags2 (even from an uninstalled checkout).
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def _download_command(
    cell: Cell, settings: BenchSettings, base_url: str, dest: Path, record: Path
) -> list[str]:
    return [
        sys.executable, "-P", "-m", "flags2", "download", *cell.codes.args,
        "--mode", cell.mode, "-m", str(cell.max_req), "-s", base_url, "--no-serve",
        "--json", str(record), "-d", str(dest),
        "--retries", str(settings.retries), "--timeout", repr(settings.timeout),
    ]  # fmt: skip


def _curl_command(cell: Cell, base_url: str, dest: Path) -> list[str]:
    command = [
        "curl", "--parallel", "--parallel-max", str(cell.concurrency), "-s",
        "-w", "%{http_code}\\n",  # one status per transfer, to count like flags2
    ]  # fmt: skip
    for cc in cell.codes.codes:
        low = cc.lower()
        command += ["-o", str(dest / f"{cc}.gif"), f"{base_url}/{low}/{low}.gif"]
    return command


def _curl_record(
    cell: Cell, base_url: str, wall: float, statuses: list[str]
) -> dict[str, Any]:
    counts = {"OK": 0, "NOT_FOUND": 0, "ERROR": 0, "CANCELLED": 0}
    for status in statuses:
        key = {"200": "OK", "404": "NOT_FOUND"}.get(status, "ERROR")
        counts[key] += 1
    counts["ERROR"] += len(cell.codes.codes) - len(statuses)  # transfers never done
    return {
        "mode": CURL, "server": "CUSTOM", "base_url": redact(base_url),
        "concurrency": cell.concurrency, "elapsed": round(wall, 6),
        "counts": counts, "flags": [],
    }  # fmt: skip


def _run_once(cell: Cell, settings: BenchSettings, work: Path, spawner: Spawner) -> Run:
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        folder = Path(scratch)
        dest, record_path = folder / "dest", folder / "run.json"
        out, err = folder / "stdout", folder / "stderr"
        dest.mkdir()
        with _server(cell, settings) as base_url:
            if cell.mode == CURL:
                command = _curl_command(cell, base_url, dest)
            else:
                command = _download_command(cell, settings, base_url, dest, record_path)
            measured = spawner.run(command, env=_child_env(), stdout=out, stderr=err)
            stats = _read_stats(base_url) if settings.url is None else None
        status, wall = measured.status, measured.wall
        stdout = out.read_text(errors="replace")
        stderr = err.read_text(errors="replace").strip()
        if cell.mode == CURL:
            record = _curl_record(cell, base_url, wall, stdout.split())
            status = EXIT_ERRORS if record["counts"]["ERROR"] else EXIT_OK
        elif record_path.exists():
            record = json.loads(record_path.read_text(encoding="utf-8"))
        else:  # the child died before writing its record
            n = len(cell.codes.codes)
            counts = {"OK": 0, "NOT_FOUND": 0, "ERROR": n, "CANCELLED": 0}
            record = {"mode": cell.mode, "elapsed": wall, "counts": counts, "flags": []}
    return Run(record, wall, measured.peak_rss_mib, status, stats, stderr)


def _ideal(cell: Cell, settings: BenchSettings) -> IdealRun | None:
    if settings.url is not None or cell.mode == CURL:
        return None
    return ideal_run(
        cell.codes.codes,
        kind=cell.server,
        options=settings.server,
        seed=settings.seed,
        concurrency=cell.concurrency,
        retries=settings.retries,
        timeout=settings.timeout,
    )


def _compare(rows: Sequence[Row]) -> None:
    """Fill in each row's speed-up over sequential and ratio to curl."""
    for row in rows:
        if not row.runs:
            continue
        cell = row.cell
        peers = [
            r
            for r in rows
            if r.runs and r.cell.server == cell.server and r.cell.codes == cell.codes
        ]
        if row.cell.mode != CURL:
            seq = [r for r in peers if r.cell.mode == "sequential"]
            if seq:
                row.speedup = seq[0].median_elapsed / row.median_elapsed
            curls = [r for r in peers if r.cell.mode == CURL]
            # Same -m if curl ran it, otherwise the first curl row of these codes.
            same_m = [r for r in curls if r.cell.max_req == row.cell.max_req]
            if curls:
                row.vs_curl = row.median_wall / (same_m or curls)[0].median_wall


def _progress(total: int) -> Any:
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="run", file=sys.stderr, leave=False)


def _banner(settings: BenchSettings, cells: Sequence[Cell]) -> str:
    opts = settings.server
    if settings.url is not None:
        where = f"server {redact(settings.url)}"
    else:
        where = (
            f"seed {settings.seed} (replay with --seed {settings.seed});"
            f" delays {opts.min_delay:g}-{opts.max_delay:g} s"
        )
        if any(cell.server == "error" for cell in cells):
            where += f", ERROR {opts.error_rate:.0%} {describe_faults(opts.faults)}"
    return (
        f"flags2 bench: {len(cells)} cells x {settings.repeat} runs; {where};"
        f" timeout {settings.timeout:g} s, retries {settings.retries}"
    )


_SETTLE = 0.3  # seconds between runs against an external server


def run_bench(settings: BenchSettings, *, out: TextIO | None = None) -> int:
    """Run the matrix, print the table, write ``--json`` and ``--plot``.

    Returns the exit status: 0, 1 if any cell had errors its plan does not
    explain (or a run crashed), 130 on Ctrl-C.
    """
    out = out or sys.stdout
    cells = list(settings.cells)
    if any(c.mode == CURL for c in cells) and shutil.which("curl") is None:
        print(
            "flags2 bench: curl not found on PATH; skipping the curl rows",
            file=sys.stderr,
        )
        cells = [c for c in cells if c.mode != CURL]
    print(_banner(settings, cells), file=out, flush=True)
    rows = [Row(cell, ideal=_ideal(cell, settings)) for cell in cells]
    started = time.perf_counter()
    bar = _progress(len(rows) * settings.repeat)
    interrupted = False
    try:
        with (
            tempfile.TemporaryDirectory(prefix="flags2-bench-") as work,
            Spawner() as spawner,
        ):
            for _ in range(settings.repeat):
                for row in rows:
                    if bar is not None:
                        bar.set_description_str(_describe(row.cell), refresh=False)
                    run = _run_once(row.cell, settings, Path(work), spawner)
                    row.runs.append(run)
                    if settings.url is not None:
                        # An external server is still closing the last run's
                        # connections (676 of them at -e): let it, or the next
                        # run, whoever it is, pays for them.
                        time.sleep(_SETTLE)
                    if bar is not None:
                        bar.update()
    except KeyboardInterrupt:
        interrupted = True
    except LaunchError as exc:  # a bundled server would not start: say why
        print(f"flags2 bench: {exc}", file=sys.stderr)
        return EXIT_ERRORS
    finally:
        if bar is not None:
            bar.close()
    rows = [row for row in rows if row.runs]
    _compare(rows)
    if rows:
        for line in format_table(rows, settings):
            print(line, file=out)
    took = time.perf_counter() - started
    print(f"bench took {took:.1f}s", file=out)
    _report_crashes(rows)
    if interrupted:
        print("flags2 bench: interrupted; nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    if settings.json_path is not None:
        text = json.dumps(bench_record(rows, settings), indent=2) + "\n"
        settings.json_path.write_text(text, encoding="utf-8")
    if settings.plot_path is not None:
        _plot(rows, settings.plot_path, out)
    return EXIT_ERRORS if any(row.unexpected for row in rows) else EXIT_OK


def _report_crashes(rows: Sequence[Row]) -> None:
    for row in rows:
        for run in row.runs:
            if run.exit_status not in (EXIT_OK, EXIT_ERRORS):
                tail = run.stderr.splitlines()[-1:] or ["(no output)"]
                print(
                    f"flags2 bench: {_describe(row.cell)} exited with status"
                    f" {run.exit_status}: {tail[0]}",
                    file=sys.stderr,
                )


def _plot(rows: Sequence[Row], path: Path, out: TextIO) -> None:
    from flags2.plot import Panel, draw_timeline

    panels = [
        Panel(
            title=f"{_describe(row.cell)}: {row.median_elapsed:.2f}s"
            + (f", ideal {row.ideal.elapsed:.2f}s" if row.ideal else ""),
            flags=row.median_run().record["flags"],
            ideal=row.ideal.elapsed if row.ideal is not None else None,
        )
        for row in rows
        if row.runs and row.cell.mode != CURL
    ]
    if not panels:  # curl reports no per-request times
        print("timeline: nothing to draw (only curl rows)", file=out)
        return
    draw_timeline(panels, path)
    print(f"timeline: {path}", file=out)


# -- showing ---------------------------------------------------------------------


def _server_label(cell: Cell) -> str:
    return "URL" if cell.server == "url" else cell.server.upper()


def _describe(cell: Cell) -> str:
    return f"{cell.mode} {_server_label(cell)} -m {cell.max_req} {cell.codes.label}"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def format_table(rows: Sequence[Row], settings: BenchSettings) -> list[str]:
    """The table's lines, with a key to its columns and the teaching notes."""
    show_faults = any(row.cell.server == "error" for row in rows)
    show_curl = any(row.cell.mode == CURL for row in rows)
    header = ["mode", "server", "-m", "codes", "OK/404/err", "elapsed", "wall",
              "speed-up", "ideal", "eff", "peak", "RSS MiB"]  # fmt: skip
    if show_faults:
        header.append("faults")
    if show_curl:
        header.append("vs curl")
    table = [header]
    for row in rows:
        c = row.counts
        cell = row.cell
        codes = cell.codes.label
        codes = (
            codes if len(codes) <= 12 else codes[:11] + "~"
        ) + f" ({len(cell.codes.codes)})"
        eff = row.efficiency
        peak = row.peak_in_flight
        line = [
            # curl's -m is what it was given: --parallel-max, capped at 300.
            cell.mode, _server_label(cell),
            str(cell.concurrency if cell.mode == CURL else cell.max_req), codes,
            f"{c['OK']}/{c['NOT_FOUND']}/{c['ERROR']}"
            + (f"/{c['CANCELLED']}c" if c.get("CANCELLED") else ""),
            _secs(row.median_elapsed) if cell.mode != CURL else "-",
            _secs(row.median_wall), _ratio(row.speedup),
            _secs(row.ideal.elapsed if row.ideal else None),
            "-" if eff is None else f"{eff:.2f}",
            "-" if peak is None else str(peak), f"{row.peak_rss_mib:.1f}",
        ]  # fmt: skip
        if show_faults:
            faults = row.faults
            line.append("-" if faults is None else str(faults))
        if show_curl:
            line.append(_ratio(row.vs_curl))
        if row.unexpected:
            line[4] += " !"
        table.append(line)
    right = {"-m", "elapsed", "wall", "speed-up", "ideal", "eff", "peak", "RSS MiB",
             "faults", "vs curl"}  # fmt: skip
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [
        "  ".join(
            text.rjust(w) if name in right else text.ljust(w)
            for name, text, w in zip(header, r, widths, strict=True)
        ).rstrip()
        for r in table
    ]
    lines += _notes(rows, settings)
    return lines


def _notes(rows: Sequence[Row], settings: BenchSettings) -> list[str]:
    notes = [
        "elapsed: median of the downloads' own time; wall: median of the whole"
        " process (start-up included)",
    ]
    if settings.url is None:
        notes.append(
            "ideal: best possible time given the seeded delays and -m;"
            " eff = ideal / elapsed; peak: most requests in flight at the server"
        )
        # The lesson of -e at -m 1000: what sequential would have cost.
        for row in rows:
            has_seq = any(
                r.cell.mode == "sequential"
                and r.cell.server == row.cell.server
                and r.cell.codes == row.cell.codes
                for r in rows
            )
            if has_seq or row.ideal is None or row.cell.server == "local":
                continue
            seq = makespan((cost.seconds for cost in row.ideal.costs), 1)
            note = (
                f"sequential over {row.cell.codes.label} on"
                f" {_server_label(row.cell)} would take at least {seq:.1f}s"
            )
            if note not in notes:
                notes.append(note)
    if any(row.cell.mode == CURL for row in rows):
        notes.append(
            "vs curl: wall / curl's wall on the same codes; curl's -m is its"
            f" --parallel-max (at most {_CURL_MAX_PARALLEL})"
        )
    if any(row.unexpected for row in rows):
        notes.append(
            "!: errors beyond those the seeded plan makes unavoidable, or a run"
            " that crashed (exit status 1)"
        )
    return notes


def bench_record(rows: Sequence[Row], settings: BenchSettings) -> dict[str, Any]:
    """The ``--json`` object: seed, machine, settings and one object per row."""
    opts = settings.server
    return {
        "flags2": __version__,
        "seed": settings.seed,
        "machine": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        },
        "settings": {
            "repeat": settings.repeat,
            "retries": settings.retries,
            "timeout": settings.timeout,
            "url": None if settings.url is None else redact(settings.url),
            "min_delay": opts.min_delay,
            "max_delay": opts.max_delay,
            "error_rate": opts.error_rate,
            "faults": describe_faults(opts.faults),
        },
        "rows": [_row_record(row) for row in rows],
    }


def _rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _row_record(row: Row) -> dict[str, Any]:
    cell = row.cell
    return {
        "mode": cell.mode,
        "server": _server_label(cell),
        "max_req": cell.max_req,
        "concurrency": cell.concurrency,
        "codes": cell.codes.label,
        "n_codes": len(cell.codes.codes),
        "counts": row.counts,
        "median_elapsed": _rounded(row.median_elapsed),
        "median_wall": _rounded(row.median_wall),
        "ideal": _rounded(row.ideal.elapsed if row.ideal else None),
        "efficiency": _rounded(row.efficiency, 4),
        "speedup": _rounded(row.speedup, 4),
        "vs_curl": _rounded(row.vs_curl, 4),
        "peak_in_flight": row.peak_in_flight,
        "peak_rss_mib": round(row.peak_rss_mib, 1),
        "planned_errors": row.ideal.errors if row.ideal else None,
        "faults_injected": row.faults,
        "unexpected_errors": row.unexpected,
        "runs": [run.record for run in row.runs],
        "measures": [
            {
                "wall": round(run.wall, 6),
                "peak_rss_mib": round(run.peak_rss_mib, 1),
                "exit_status": run.exit_status,
                "server_stats": run.server_stats,
            }
            for run in row.runs
        ],
    }
