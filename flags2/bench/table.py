"""What a bench prints: its banner, its table, and the notes that teach it.

One row per cell; the notes under the table say what the columns mean, what
sequential would have cost, and which cells were CPU-bound, so a low
efficiency explains itself::

    mode        server    -m  codes       OK/404/err  elapsed  ...  eff  CPU ms/req
    threadpool  DELAY   1000  -e (676)    194/482/0     1.08s  ...  0.37     1.9+1.1
    CPU-bound: threadpool DELAY -m 1000 -e kept 1.9 of 2 cores busy ...
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from flags2.bench.floor import ApiFloor
from flags2.bench.ideal import makespan
from flags2.bench.matrix import PEER_MAX_PARALLEL
from flags2.bench.model import ARIA2C, CPU_BOUND_SHARE, PEERS, BenchSettings, Cell, Row
from flags2.servers import tls
from flags2.servers.options import describe_faults
from flags2.urls import redact

__all__ = [
    "SLOW_EFFICIENCY",
    "banner",
    "cpu_notes",
    "describe",
    "floor_note",
    "format_table",
    "server_label",
    "shows_protocols",
]

SLOW_EFFICIENCY = 0.9
"""Below this efficiency a row's note says where its time went."""

_RIGHT = {"-m", "conns", "elapsed", "wall", "start-up", "speed-up", "ideal", "eff",
          "peak", "RSS MiB", "CPU ms/req", "faults",
          *(f"vs {peer}" for peer in PEERS)}  # fmt: skip


def server_label(cell: Cell) -> str:
    if cell.server == tls.KIND:
        return tls.LABEL
    return "URL" if cell.server == "url" else cell.server.upper()


def describe(cell: Cell) -> str:
    """A cell in one phrase: ``asyncio DELAY -m 5 POP20``, ``curl URL HTTP/2 ...``."""
    http = f" HTTP/{cell.http}" if cell.http is not None else ""
    return (
        f"{cell.mode} {server_label(cell)}{http} -m {cell.max_req} {cell.codes.label}"
    )


def banner(settings: BenchSettings, cells: Sequence[Cell]) -> str:
    """The first line: how many runs, and how to replay them."""
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


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def _cpu(row: Row) -> str:
    client, server = row.cpu_per_request()
    if client is None:
        return "-"
    below = row.client_cpu_below_noise()
    text = f"{client * 1000:.1f}" if below is None else f"<{below * 1000:.1f}"
    return text if server is None else f"{text}+{server * 1000:.1f}"


def shows_protocols(rows: Sequence[Row]) -> bool:
    """True when the table has its HTTP and conns columns: ``--http`` was
    given, or some run told its connections (https)."""
    return any(row.cell.http is not None or row.connections is not None for row in rows)


def _protocol(row: Row) -> str:
    """The protocols the answers came over (``2``, ``1.1``), else what was asked."""
    seen = [version.removeprefix("HTTP/") for version in row.http_versions]
    if seen:
        return "+".join(seen)
    return f"{row.cell.http}?" if row.cell.http is not None else "-"


def _conns(row: Row) -> str:
    return "-" if row.connections is None else str(row.connections)


def _codes(cell: Cell) -> str:
    label = cell.codes.label
    short = label if len(label) <= 12 else label[:11] + "~"
    return f"{short} ({len(cell.codes.codes)})"


def _line(
    row: Row, peers: Sequence[str], show_faults: bool, protocols: bool
) -> list[str]:
    c, cell, eff, peak = row.counts, row.cell, row.efficiency, row.peak_in_flight
    line = [
        # A peer's -m is what it was given, capped as it caps itself.
        cell.mode, server_label(cell),
        *([_protocol(row)] if protocols else []),
        str(cell.concurrency if cell.is_peer else cell.max_req),
        *([_conns(row)] if protocols else []), _codes(cell),
        f"{c['OK']}/{c['NOT_FOUND']}/{c['ERROR']}"
        + (f"/{c['CANCELLED']}c" if c.get("CANCELLED") else "")
        + (" !" if row.unexpected else ""),
        _secs(row.median_elapsed) if not cell.is_peer else "-",
        _secs(row.median_wall), _secs(row.median_startup), _ratio(row.speedup),
        _secs(row.ideal.elapsed if row.ideal else None),
        "-" if eff is None else f"{eff:.2f}",
        "-" if peak is None else str(peak), f"{row.peak_rss_mib:.1f}", _cpu(row),
    ]  # fmt: skip
    if show_faults:
        faults = row.faults
        line.append("-" if faults is None else str(faults))
    line += [_ratio(row.vs_peer.get(peer)) for peer in peers]
    return line


def format_table(
    rows: Sequence[Row],
    settings: BenchSettings,
    *,
    cores: int | None = None,
    floor: ApiFloor | None = None,
) -> list[str]:
    """The table's lines, with a key to its columns and the teaching notes;
    `floor`, httpx2's own CPU per request, is one line among them."""
    show_faults = any(row.cell.server == "error" for row in rows)
    protocols = shows_protocols(rows)
    peers = [p for p in PEERS if any(row.cell.mode == p for row in rows)]
    header = ["mode", "server", *(["HTTP"] if protocols else []), "-m",
              *(["conns"] if protocols else []), "codes", "OK/404/err", "elapsed",
              "wall", "start-up", "speed-up", "ideal", "eff", "peak", "RSS MiB",
              "CPU ms/req"]  # fmt: skip
    if show_faults:
        header.append("faults")
    header += [f"vs {peer}" for peer in peers]
    table = [header, *(_line(row, peers, show_faults, protocols) for row in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [
        "  ".join(
            text.rjust(w) if name in _RIGHT else text.ljust(w)
            for name, text, w in zip(header, r, widths, strict=True)
        ).rstrip()
        for r in table
    ]
    notes = _notes(rows, settings, peers, cores or os.cpu_count() or 1)
    if floor is not None:
        notes.insert(2, floor_note(floor))
    if any(row.client_cpu_below_noise() is not None for row in rows):
        notes.insert(
            2,
            "CPU ms/req <x: the client's lies below x, within the spread of its"
            " start-up's CPU from run to run (too few requests to tell apart)",
        )
    if protocols:
        notes += _protocol_notes(rows)
    return lines + notes


def floor_note(floor: ApiFloor) -> str:
    """The reference under CPU ms/req: what httpx2's API itself costs."""
    both = f"{floor.client * 1000:.2f}"
    if floor.async_client is not None:
        both += f", AsyncClient.get {floor.async_client * 1000:.2f}"
    return (
        f"httpx2 floor: Client.get {both} ms/req of CPU on a MockTransport"
        f" ({floor.requests} requests of a {floor.body_bytes}-byte flag, measured"
        " now): no httpx2-based downloader spends less a request"
    )


def _protocol_notes(rows: Sequence[Row]) -> list[str]:
    notes = [
        "HTTP: the protocol the answers came over (with 2 asked, offered by ALPN,"
        " the server picks; ?: asked, its program does not say); conns:"
        " connections the run opened (median), where its program tells"
    ]
    for row in rows:
        versions = row.http_versions
        if row.cell.http == "2" and versions and "HTTP/2" not in versions:
            notes.append(
                f"{describe(row.cell)}: HTTP/2 was offered, the server chose"
                f" {' and '.join(versions)}"
            )
    if any(row.cell.http is not None for row in rows) and any(
        row.cell.mode == ARIA2C for row in rows
    ):
        notes.append("aria2c speaks HTTP/1.1 only: it has no HTTP/2 row")
    return notes


def _sequential_notes(rows: Sequence[Row]) -> list[str]:
    """The lesson of -e at -m 1000: what sequential would have cost."""
    notes: list[str] = []
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
            f" {server_label(row.cell)} would take at least {seq:.1f}s"
        )
        if note not in notes:
            notes.append(note)
    return notes


def _processes(cell: Cell) -> str:
    if cell.mode.startswith("processpool"):
        return f"{cell.concurrency + 1} processes"
    return "one process"


def cpu_notes(rows: Sequence[Row], cores: int) -> list[str]:
    """Why a row is far from its ideal, in CPU seconds; which rows were CPU-bound."""
    notes = []
    for row in rows:
        load, eff = row.cpu_load, row.efficiency
        if load is None:
            continue
        if row.cpu_bound(cores):
            notes.append(
                f"CPU-bound: {describe(row.cell)} kept {load:.1f} of {cores} cores"
                " busy (client + server CPU / wall): it waited for the processor,"
                " not the network"
            )
        elif eff is not None and eff < SLOW_EFFICIENCY and row.ideal is not None:
            gap = row.median_elapsed - row.ideal.elapsed
            client, server = row.cpu_per_request()
            n = len(row.cell.codes.codes)
            notes.append(
                f"eff {eff:.2f}: {describe(row.cell)} is {gap:.2f}s over its ideal;"
                f" its client spent {(client or 0) * n:.2f}s of CPU on its {n}"
                f" requests (start-up left out), in {_processes(row.cell)}, and the"
                " server"
                f" {(server or 0) * n:.2f}s: the last requests wait for the CPU"
                " before their delays even start"
            )
    return notes


def _notes(
    rows: Sequence[Row], settings: BenchSettings, peers: Sequence[str], cores: int
) -> list[str]:
    notes = [
        "elapsed: median of the downloads' own time; wall: median of the whole"
        " process (start-up included)",
        "CPU ms/req: client + server CPU per code, medians; the client's without"
        " its start-up (a run of it against a port that refuses, each repeat)",
        "start-up: wall - elapsed (interpreter, imports, exit), plus for"
        " processpool the wait for its last worker, a median",
    ]
    if any(row.cell.mode.startswith("processpool") for row in rows):
        notes.append(
            "RSS MiB: the peak memory of the whole process tree; for processpool"
            " the parent's peak plus every worker's (a sum of peaks, so at most"
            " what the tree held at once; under fork, pages a worker still shares"
            " with the parent count in both), for the other rows the one process"
        )
    if settings.url is None:
        notes.append(
            "ideal: best possible time given the seeded delays and -m;"
            " eff = ideal / elapsed; peak: most requests in flight at the server"
        )
        notes += _sequential_notes(rows)
    notes += cpu_notes(rows, cores)
    if not any("CPU-bound" in note for note in notes) and any(
        row.cpu_load is not None for row in rows
    ):
        busiest = max(rows, key=lambda row: row.cpu_load or 0.0)
        notes.append(
            f"no cell was CPU-bound (>= {CPU_BOUND_SHARE:.0%} of {cores} cores busy);"
            f" busiest: {describe(busiest.cell)} at {busiest.cpu_load or 0:.1f}"
        )
    for peer in peers:
        notes.append(
            f"vs {peer}: wall / {peer}'s wall on the same codes; {peer}'s -m is its"
            f" {'--parallel-max' if peer == 'curl' else '-j'}"
            f" (at most {PEER_MAX_PARALLEL[peer]})"
        )
    if any(row.unexpected for row in rows):
        notes.append(
            "!: errors beyond those the seeded plan makes unavoidable, or a run"
            " that crashed (exit status 1)"
        )
    return notes
