"""Hand-made cells, runs and rows for the bench's unit tests (no process runs)."""

from __future__ import annotations

from typing import Any

from flags2.bench.ideal import IdealRun, RequestCost
from flags2.bench.model import BenchSettings, Cell, CodeSet, Row, Run
from flags2.servers.options import ServerOptions

__all__ = ["make_cell", "make_row", "make_run", "make_settings"]


def make_cell(
    mode: str = "asyncio", n: int = 4, server: str = "delay", max_req: int = 5
) -> Cell:
    codes = tuple(f"A{chr(65 + i % 26)}" for i in range(n))
    return Cell(
        mode, server, max_req, CodeSet(f"{n} codes", (), codes), min(max_req, n)
    )


def make_run(
    elapsed: float = 1.0,
    *,
    wall: float | None = None,
    client_cpu: float | None = 0.2,
    server_cpu: float | None = 0.1,
    counts: dict[str, int] | None = None,
    status: int = 0,
    stats: dict[str, Any] | None = None,
) -> Run:
    record = {
        "elapsed": elapsed,
        "counts": counts or {"OK": 4, "NOT_FOUND": 0, "ERROR": 0, "CANCELLED": 0},
        "flags": [],
    }
    return Run(
        record,
        wall if wall is not None else elapsed + 0.1,
        30.0,
        status,
        stats,
        client_cpu=client_cpu,
        server_cpu=server_cpu,
    )


def make_row(cell: Cell, *runs: Run, ideal: float | None = None) -> Row:
    plan = None
    if ideal is not None:
        costs = tuple(RequestCost(ideal, 1, False) for _ in cell.codes.codes)
        plan = IdealRun(ideal, costs)
    return Row(cell, list(runs), ideal=plan)


def make_settings(url: str | None = None) -> BenchSettings:
    return BenchSettings(cells=(), server=ServerOptions(seed=7), url=url)
