"""The ``--json`` of a bench: seed, machine, settings, and one object per row.

Each row carries its medians and ratios, every run's own ``download --json``
record with the run's CPU added (``"cpu": {"client": s, "server": s}``), and
what was measured from outside (wall, peak memory, exit status, ``/_stats``).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from typing import Any

from flags2 import __version__
from flags2.bench.floor import ApiFloor
from flags2.bench.model import PEERS, BenchSettings, Row, Run
from flags2.bench.table import server_label
from flags2.servers.options import describe_faults
from flags2.urls import redact

__all__ = ["bench_record"]


def bench_record(
    rows: Sequence[Row], settings: BenchSettings, floor: ApiFloor | None = None
) -> dict[str, Any]:
    """The ``--json`` object: seed, machine, settings, httpx2's own CPU per
    request (``httpx2_floor``, seconds) and one object per row."""
    opts = settings.server
    cores = os.cpu_count()
    return {
        "flags2": __version__,
        "seed": settings.seed,
        "machine": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "cpu_count": cores,
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
        "httpx2_floor": None if floor is None else floor.as_record(),
        "rows": [_row_record(row, cores or 1) for row in rows],
    }


def _rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _run_record(run: Run) -> dict[str, Any]:
    cpu = {"client": _rounded(run.client_cpu), "server": _rounded(run.server_cpu)}
    return {**run.record, "cpu": cpu}


def _row_record(row: Row, cores: int) -> dict[str, Any]:
    cell = row.cell
    client, server = row.cpu_per_request()
    return {
        "mode": cell.mode,
        "server": server_label(cell),
        "max_req": cell.max_req,
        "concurrency": cell.concurrency,
        "http": cell.http,
        "http_versions": row.http_versions,
        "connections": row.connections,
        "codes": cell.codes.label,
        "n_codes": len(cell.codes.codes),
        "counts": row.counts,
        "median_elapsed": _rounded(row.median_elapsed),
        "median_wall": _rounded(row.median_wall),
        "ideal": _rounded(row.ideal.elapsed if row.ideal else None),
        "efficiency": _rounded(row.efficiency, 4),
        "speedup": _rounded(row.speedup, 4),
        **{f"vs_{peer}": _rounded(row.vs_peer.get(peer), 4) for peer in PEERS},
        "peak_in_flight": row.peak_in_flight,
        "peak_rss_mib": round(row.peak_rss_mib, 1),
        "median_startup": _rounded(row.median_startup),
        "cpu_per_request": {"client": _rounded(client), "server": _rounded(server)},
        "client_startup_cpu": _rounded(row.startup_cpu),
        "client_startup_cpus": [_rounded(cpu) for cpu in row.startup_cpus],
        # Set when the client's CPU a request is below what the start-up's
        # spread lets the bench resolve: the bound, in seconds a request.
        "cpu_per_request_client_below": _rounded(row.client_cpu_below_noise()),
        "cpu_load": _rounded(row.cpu_load, 4),
        "cpu_bound": row.cpu_bound(cores),
        "planned_errors": row.ideal.errors if row.ideal else None,
        "faults_injected": row.faults,
        "unexpected_errors": row.unexpected,
        "runs": [_run_record(run) for run in row.runs],
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
