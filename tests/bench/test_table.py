"""The table: one aligned row per cell, the CPU column, and the notes that explain."""

from __future__ import annotations

import dataclasses

from flags2.bench.floor import ApiFloor
from flags2.bench.table import banner, cpu_notes, describe, format_table
from tests.bench.helpers import make_cell, make_row, make_run, make_settings


def column(lines: list[str], name: str, row: int) -> str:
    """The text of column `name` in table row `row` (1 = the first cell)."""
    header = lines[0]
    start = header.index(name)
    end = start + len(name)  # right-aligned columns end where their header does
    return lines[row][:end].split()[-1]


def test_cpu_column_is_client_plus_server_milliseconds_per_code() -> None:
    cell = make_cell(n=4)
    row = make_row(cell, make_run(client_cpu=0.2, server_cpu=0.1), ideal=0.9)
    lines = format_table([row], make_settings(), cores=2)
    assert "CPU ms/req" in lines[0]
    assert column(lines, "CPU ms/req", 1) == "50.0+25.0"
    assert any(line.startswith("CPU ms/req: client + server") for line in lines)


def test_a_peer_without_server_cpu_shows_its_clients_alone() -> None:
    asyncio = make_row(make_cell(server="url"), make_run(0.5))
    curl = make_row(make_cell("curl", server="url"), make_run(server_cpu=None))
    asyncio.vs_peer["curl"] = 0.5
    lines = format_table([asyncio, curl], make_settings(url="http://h/f"), cores=2)
    assert column(lines, "CPU ms/req", 2) == "50.0"
    assert column(lines, "vs curl", 1) == "0.5x" and "vs aria2c" not in lines[0]


def test_a_cpu_bound_cell_is_named_under_the_table() -> None:
    run = make_run(0.9, wall=1.0, client_cpu=1.3, server_cpu=0.4)
    busy = make_row(make_cell(max_req=1000), run, ideal=0.4)
    calm = make_row(make_cell(), make_run(1.0, wall=1.1), ideal=0.98)
    notes = cpu_notes([busy, calm], cores=2)
    assert notes == [
        f"CPU-bound: {describe(busy.cell)} kept 1.7 of 2 cores busy (client +"
        " server CPU / wall): it waited for the processor, not the network"
    ]
    assert cpu_notes([busy], cores=8) != notes  # on 8 cores it was not


def test_a_slow_cell_that_was_not_cpu_bound_says_what_cpu_it_used() -> None:
    slow = make_row(make_cell(), make_run(0.6, wall=0.7, client_cpu=0.42), ideal=0.4)
    (note,) = cpu_notes([slow], cores=2)
    assert note.startswith(f"eff 0.67: {describe(slow.cell)} is 0.20s over its ideal")
    assert "its client spent 0.42s of CPU on its 4 requests" in note
    assert "and the server 0.10s" in note


def test_without_a_cpu_bound_cell_the_busiest_is_named() -> None:
    rows = [make_row(make_cell(max_req=m), make_run(client_cpu=c), ideal=0.95)
            for m, c in [(5, 0.1), (30, 0.3)]]  # fmt: skip
    lines = format_table(rows, make_settings(), cores=2)
    assert lines[-1] == (
        "no cell was CPU-bound (>= 75% of 2 cores busy); busiest:"
        f" {describe(rows[1].cell)} at 0.4"
    )


def test_rows_line_up_under_their_headers() -> None:
    rows = [make_row(make_cell(max_req=m, n=n), make_run(), ideal=0.9)
            for m, n in [(5, 4), (1000, 26)]]  # fmt: skip
    lines = format_table(rows, make_settings(), cores=2)
    assert len(lines[0]) == len(lines[1]) == len(lines[2])
    assert lines[1].split()[:3] == ["asyncio", "DELAY", "5"]
    assert column(lines, "-m", 2) == "1000" and column(lines, "eff", 1) == "0.90"


def test_banner_says_how_to_replay() -> None:
    cells = (make_cell(),)
    assert "seed 7 (replay with --seed 7)" in banner(make_settings(), cells)
    assert "server http://h/f;" in banner(make_settings(url="http://h/f"), cells)


def test_a_client_cpu_within_the_start_ups_spread_shows_as_a_bound() -> None:
    row = make_row(make_cell(n=4), make_run(client_cpu=0.3, server_cpu=0.1))
    row.startup_cpus = [0.28, 0.32, 0.36]  # above the run: 0.0 would be false
    lines = format_table([row], make_settings(), cores=2)
    assert column(lines, "CPU ms/req", 1) == "<20.0+25.0"
    assert any(
        line.startswith("CPU ms/req <x: the client's lies below") for line in lines
    )


def test_the_httpx2_floor_is_one_line_under_the_table() -> None:
    row = make_row(make_cell(), make_run())
    floor = ApiFloor(
        requests=300, body_bytes=9942, client=0.00007, async_client=0.00008
    )
    lines = format_table([row], make_settings(), cores=2, floor=floor)
    assert [line for line in lines if line.startswith("httpx2 floor:")] == [
        "httpx2 floor: Client.get 0.07, AsyncClient.get 0.08 ms/req of CPU on a"
        " MockTransport (300 requests of a 9942-byte flag, measured now): no"
        " httpx2-based downloader spends less a request"
    ]
    assert not any(
        "httpx2 floor" in line for line in format_table([row], make_settings())
    )


def test_rows_per_protocol_show_http_and_connections_beside_m() -> None:
    base = make_cell(server="url", max_req=5)
    rows = []
    for http, version, conns in [("1.1", "HTTP/1.1", 4), ("2", "HTTP/2", 1)]:
        run = make_run()
        run.record["connections"] = conns
        run.record["flags"] = [{"http_version": version}]
        rows.append(make_row(dataclasses.replace(base, http=http), run))
    lines = format_table(rows, make_settings(url="https://h/f"), cores=2)
    assert lines[0].split()[:5] == ["mode", "server", "HTTP", "-m", "conns"]
    assert [line.split()[:5] for line in lines[1:3]] == [
        ["asyncio", "URL", "1.1", "5", "4"],
        ["asyncio", "URL", "2", "5", "1"],
    ]
    assert any(line.startswith("HTTP: the protocol the answers") for line in lines)
    assert describe(rows[1].cell) == "asyncio URL HTTP/2 -m 5 4 codes"


def test_http2_offered_and_refused_is_said() -> None:
    run = make_run()
    run.record["flags"] = [{"http_version": "HTTP/1.1"}]
    row = make_row(make_cell(server="url", max_req=5), run)
    row.cell = dataclasses.replace(row.cell, http="2")
    lines = format_table([row], make_settings(url="https://h/f"), cores=2)
    assert column(lines, "HTTP", 1) == "1.1"
    assert (
        f"{describe(row.cell)}: HTTP/2 was offered, the server chose HTTP/1.1" in lines
    )


def test_without_http_or_known_connections_the_columns_stay_out() -> None:
    lines = format_table([make_row(make_cell(), make_run())], make_settings(), cores=2)
    assert "HTTP" not in lines[0].split() and "conns" not in lines[0]
