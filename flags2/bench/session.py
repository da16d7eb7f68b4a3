"""One ``flags2 bench`` from start to end: every run, then table, JSON, picture.

The runs alternate (A, B, C, A, B, C...) so a slow spell of a shared machine
hits every cell alike; the exit status says whether any cell had errors its
seeded plan does not explain.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from flags2 import portable
from flags2.bench import peers
from flags2.bench.floor import ApiFloor, measure_in_child
from flags2.bench.measure import Spawner
from flags2.bench.model import PEERS, BenchSettings, Row
from flags2.bench.record import bench_record
from flags2.bench.run import child_env, ideal_of, run_once, startup_cpu
from flags2.bench.table import banner, describe, format_table
from flags2.runner import EXIT_ERRORS, EXIT_INTERRUPTED, EXIT_OK
from flags2.servers.launch import LaunchError

__all__ = ["compare", "missing_peers", "run_bench"]

_SETTLE = 0.3  # seconds between runs against an external server
_MIN_STARTUPS = 3


def compare(rows: Sequence[Row]) -> None:
    """Fill in each row's speed-up over sequential and ratio to each peer."""
    for row in rows:
        if not row.runs or row.cell.is_peer:
            continue
        cell = row.cell
        same = [
            r
            for r in rows
            if r.runs
            and r.cell.server == cell.server
            and r.cell.codes == cell.codes
            and r.cell.http == cell.http
        ]
        seq = [r for r in same if r.cell.mode == "sequential"]
        if seq:
            row.speedup = seq[0].median_elapsed / row.median_elapsed
        for peer in PEERS:
            others = [r for r in same if r.cell.mode == peer]
            # Same -m if the peer ran it, otherwise its first row of these codes.
            same_m = [r for r in others if r.cell.max_req == cell.max_req]
            if others:
                row.vs_peer[peer] = row.median_wall / (same_m or others)[0].median_wall


def _progress(total: int) -> Any:
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="run", file=sys.stderr, leave=False)


def _measure_startups(
    rows: Sequence[Row], settings: BenchSettings, work: Path, spawner: Spawner
) -> None:
    """One start-up run per program and protocol, added to each of its rows.

    Once per repeat, between the runs: a single figure taken first is that of
    a cold machine (files not yet cached), above most runs themselves.
    """
    floors: dict[tuple[str, str | None], float | None] = {}
    for row in rows:
        key = (row.cell.mode, row.cell.http)
        if key not in floors:
            floors[key] = startup_cpu(row.cell, settings, work, spawner)
        if (floor := floors[key]) is not None:
            row.startup_cpus.append(floor)


def _run_all(rows: list[Row], settings: BenchSettings, bar: Any) -> None:
    with (
        # The runs' downloads go to memory where there is a folder for it: a
        # disk would add its own varying cost of creating each file.
        tempfile.TemporaryDirectory(
            prefix="flags2-bench-", dir=portable.memory_dir()
        ) as work,
        Spawner() as spawner,
    ):
        # A first pass, thrown away, warms the caches (the first run of a
        # program on a machine pays for reading its files and compiling).
        _measure_startups(
            [Row(row.cell) for row in rows], settings, Path(work), spawner
        )
        # At least three figures, so that their spread says how far to trust
        # a difference as small as 20 requests make.
        for _ in range(_MIN_STARTUPS - settings.repeat):
            _measure_startups(rows, settings, Path(work), spawner)
        for _ in range(settings.repeat):
            _measure_startups(rows, settings, Path(work), spawner)
            for row in rows:
                if bar is not None:
                    bar.set_description_str(describe(row.cell), refresh=False)
                row.runs.append(run_once(row.cell, settings, Path(work), spawner))
                if settings.url is not None:
                    # An external server is still closing the last run's
                    # connections (676 of them at -e): let it, or the next
                    # run, whoever it is, pays for them.
                    time.sleep(_SETTLE)
                if bar is not None:
                    bar.update()


def run_bench(settings: BenchSettings, *, out: TextIO | None = None) -> int:
    """Run the matrix, print the table, write ``--json`` and ``--plot``.

    Returns the exit status: 0, 1 if any cell had errors its plan does not
    explain (or a run crashed), 130 on Ctrl-C.
    """
    out = out or sys.stdout
    print(banner(settings, settings.cells), file=out, flush=True)
    rows = [Row(cell, ideal=ideal_of(cell, settings)) for cell in settings.cells]
    started = time.perf_counter()
    bar = _progress(len(rows) * settings.repeat)
    interrupted = False
    floor: ApiFloor | None = None
    try:
        _run_all(rows, settings, bar)
        floor = measure_in_child(child_env())
    except KeyboardInterrupt:
        interrupted = True
    except LaunchError as exc:  # a bundled server would not start: say why
        print(f"flags2 bench: {exc}", file=sys.stderr)
        return EXIT_ERRORS
    finally:
        if bar is not None:
            bar.close()
    rows = [row for row in rows if row.runs]
    compare(rows)
    if rows:
        for line in format_table(rows, settings, floor=floor):
            print(line, file=out)
    print(f"bench took {time.perf_counter() - started:.1f}s", file=out)
    _report_crashes(rows)
    if interrupted:
        print("flags2 bench: interrupted; nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    if settings.json_path is not None:
        text = json.dumps(bench_record(rows, settings, floor), indent=2) + "\n"
        settings.json_path.write_text(text, encoding="utf-8")
    if settings.plot_path is not None:
        _plot(rows, settings.plot_path, out)
    return EXIT_ERRORS if any(row.unexpected for row in rows) else EXIT_OK


def missing_peers(modes: Sequence[str]) -> list[str]:
    """The peers among `modes` whose program is not installed."""
    return [mode for mode in modes if mode in PEERS and peers.missing(mode)]


def _report_crashes(rows: Sequence[Row]) -> None:
    for row in rows:
        for run in row.runs:
            if run.exit_status not in (EXIT_OK, EXIT_ERRORS):
                tail = run.stderr.splitlines()[-1:] or ["(no output)"]
                print(
                    f"flags2 bench: {describe(row.cell)} exited with status"
                    f" {run.exit_status}: {tail[0]}",
                    file=sys.stderr,
                )


def _plot(rows: Sequence[Row], path: Path, out: TextIO) -> None:
    from flags2.bench.plot import Panel, draw_timeline

    panels = [
        Panel(
            title=f"{describe(row.cell)}: {row.median_elapsed:.2f}s"
            + (f", ideal {row.ideal.elapsed:.2f}s" if row.ideal else "")
            + (f", CPU-bound ({row.cpu_load:.1f} cores)" if row.cpu_bound() else ""),
            flags=row.median_run().record["flags"],
            ideal=row.ideal.elapsed if row.ideal is not None else None,
            cpu_bound=row.cpu_bound(),
        )
        for row in rows
        if row.runs and not row.cell.is_peer
    ]
    if not panels:  # peers report no per-request times
        print("timeline: nothing to draw (only curl or aria2c rows)", file=out)
        return
    draw_timeline(panels, path)
    print(f"timeline: {path}", file=out)
