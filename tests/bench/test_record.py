"""The ``--json`` object: every run with its CPU, every row with its figures."""

from __future__ import annotations

import json

from flags2.bench.record import bench_record
from tests.bench.helpers import make_cell, make_row, make_run, make_settings


def test_every_run_carries_client_and_server_cpu() -> None:
    row = make_row(
        make_cell(), make_run(client_cpu=0.25, server_cpu=0.125), make_run(), ideal=0.5
    )
    data = bench_record([row], make_settings())
    (got,) = data["rows"]
    assert [run["cpu"] for run in got["runs"]] == [
        {"client": 0.25, "server": 0.125},
        {"client": 0.2, "server": 0.1},
    ]
    assert got["cpu_per_request"] == {"client": 0.05625, "server": 0.028125}
    assert got["cpu_bound"] is False and got["cpu_load"] > 0
    json.dumps(data)  # all of it serialisable


def test_a_run_without_server_figures_says_null() -> None:
    row = make_row(make_cell("aria2c", server="url"), make_run(server_cpu=None))
    row.vs_peer.clear()
    (got,) = bench_record([row], make_settings(url="http://h/f"))["rows"]
    assert got["runs"][0]["cpu"] == {"client": 0.2, "server": None}
    assert got["cpu_per_request"]["server"] is None


def test_ratios_to_each_peer_keep_their_old_names() -> None:
    row = make_row(make_cell(server="url"), make_run())
    row.vs_peer.update(curl=1.25, aria2c=0.8)
    (got,) = bench_record([row], make_settings(url="http://h/f"))["rows"]
    assert (got["vs_curl"], got["vs_aria2c"]) == (1.25, 0.8)
    assert set(got) >= {"median_elapsed", "efficiency", "peak_in_flight", "measures"}
