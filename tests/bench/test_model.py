"""A row's figures from its runs: medians, efficiency, CPU per request and load."""

from __future__ import annotations

import pytest

from flags2.bench.model import CPU_BOUND_SHARE
from tests.bench.helpers import make_cell, make_row, make_run


def test_medians_and_efficiency_come_from_the_runs() -> None:
    row = make_row(make_cell(), make_run(1.0), make_run(2.0), make_run(4.0), ideal=1.0)
    assert row.median_elapsed == 2.0
    assert row.efficiency == pytest.approx(0.5)
    assert row.median_run().elapsed == 2.0


def test_cpu_per_request_is_the_median_run_cpu_over_the_codes() -> None:
    runs = [make_run(client_cpu=c, server_cpu=s) for c, s in [(0.4, 0.1), (0.8, 0.2),
            (0.6, 0.3)]]  # fmt: skip
    row = make_row(make_cell(n=4), *runs)
    assert row.client_cpu == pytest.approx(0.6) and row.server_cpu == pytest.approx(0.2)
    client, server = row.cpu_per_request()
    assert client == pytest.approx(0.15) and server == pytest.approx(0.05)


def test_a_server_without_cpu_figures_leaves_them_out() -> None:
    row = make_row(make_cell(mode="curl"), make_run(server_cpu=None))
    client, server = row.cpu_per_request()
    assert client == pytest.approx(0.05) and server is None
    assert row.runs[0].cpu_load == pytest.approx(0.2 / 1.1)


def test_cpu_bound_means_nearly_every_core_busy() -> None:
    # 1.0 s of wall: client 1.2 + server 0.4 = 1.6 cores; 2 cores x 0.75 = 1.5
    busy = make_row(
        make_cell(), make_run(0.9, wall=1.0, client_cpu=1.2, server_cpu=0.4)
    )
    idle = make_row(
        make_cell(), make_run(0.9, wall=1.0, client_cpu=0.5, server_cpu=0.2)
    )
    assert busy.cpu_load == pytest.approx(1.6) and busy.cpu_bound(2)
    assert not busy.cpu_bound(4)  # the same load is a third of four cores
    assert not idle.cpu_bound(2) and idle.cpu_load < CPU_BOUND_SHARE * 2  # type: ignore[operator]


def test_errors_beyond_the_plan_or_a_crash_are_unexpected() -> None:
    failed = {"OK": 3, "NOT_FOUND": 0, "ERROR": 1, "CANCELLED": 0}
    assert make_row(make_cell(), make_run(counts=failed)).unexpected
    assert make_row(make_cell(), make_run(status=3)).unexpected
    assert not make_row(make_cell(), make_run(), make_run()).unexpected
    worst = make_row(make_cell(), make_run(), make_run(counts=failed))
    assert worst.counts == failed  # the row shows its worst run


def test_peak_and_faults_come_from_the_servers_stats() -> None:
    stats = [
        {"peak_in_flight": p, "faults": {"teapot": f}} for p, f in [(3, 1), (5, 2)]
    ]
    cell = make_cell(server="error")
    row = make_row(cell, *(make_run(stats=s) for s in stats))
    assert row.peak_in_flight == 5 and row.faults == 2
    assert make_row(make_cell(), make_run(stats=stats[0])).faults is None
    assert make_row(make_cell(), make_run()).peak_in_flight is None


def test_peers_are_the_rows_run_by_other_programs() -> None:
    assert make_cell(mode="curl").is_peer and make_cell(mode="aria2c").is_peer
    assert not make_cell(mode="asyncio").is_peer


def test_cpu_per_request_leaves_out_the_clients_start_up() -> None:
    row = make_row(make_cell(n=4), make_run(client_cpu=0.3, server_cpu=0.1))
    row.startup_cpus = [0.1]
    client, _ = row.cpu_per_request()
    assert client == pytest.approx(0.05)
    assert row.client_cpu_below_noise() is None  # 0.2 s clear of a steady floor
    row.startup_cpus = [0.5]  # a noisy floor above the run itself: nothing, not < 0
    assert row.cpu_per_request()[0] == 0.0


def test_a_client_cpu_within_the_start_ups_spread_is_a_bound_not_zero() -> None:
    row = make_row(make_cell(n=4), make_run(client_cpu=0.3, server_cpu=0.1))
    row.startup_cpus = [0.28, 0.32, 0.36]  # median 0.32, spread 0.08
    assert row.startup_cpu == pytest.approx(0.32)
    assert row.cpu_per_request()[0] == 0.0  # the clamp: --json keeps it
    # Below 0 + 0.08 s over 4 requests: 20 ms a request at most, said so.
    assert row.client_cpu_below_noise() == pytest.approx(0.02)
