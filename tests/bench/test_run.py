"""One run: a fresh server, a measured child, its CPU and the server's over the run."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from flags2.bench.matrix import code_sets, make_cell
from flags2.bench.measure import Spawner
from flags2.bench.model import BenchSettings
from flags2.bench.run import ideal_of, run_once, server_cpu, startup_cpu
from flags2.servers.options import ServerOptions
from flags2.servers.testing import running


def stats(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats") as response:
        data: dict[str, object] = json.load(response)
        return data


def test_stats_tell_the_servers_cpu_time_as_it_grows() -> None:
    with running("local") as server:
        port = server.server_address[1]
        before = stats(port)
        t = time.process_time()  # the server is in this very process
        while time.process_time() - t < 0.2:
            pass
        after = stats(port)
    spent = server_cpu(before, after)
    assert spent is not None and spent >= 0.2


def test_server_cpu_is_unknown_without_both_figures() -> None:
    assert server_cpu(None, {"cpu_seconds": 1.0}) is None
    assert server_cpu({"requests": {}}, {"requests": {}}) is None  # not our server
    assert server_cpu({"cpu_seconds": 2.0}, {"cpu_seconds": 2.5}) == 0.5


def test_a_run_records_its_clients_cpu_and_the_servers(tmp_path: Path) -> None:
    codes = code_sets(["BR", "CN", "ZZ"], False, False, None)[0]
    cell = make_cell("asyncio", "delay", None, codes)
    options = ServerOptions(seed=3, min_delay=0.01, max_delay=0.05)
    settings = BenchSettings(cells=(cell,), server=options, repeat=1)
    with Spawner() as spawner:
        run = run_once(cell, settings, tmp_path, spawner)
    assert run.exit_status == 0, run.stderr
    assert run.counts == {
        "OK": 2, "NOT_FOUND": 1, "ERROR": 0, "CANCELLED": 0, "SKIPPED": 0,
    }  # fmt: skip
    # A Python child's start-up alone costs CPU; serving three flags much less.
    assert run.client_cpu is not None and 0.02 < run.client_cpu < run.wall * 2
    assert run.server_cpu is not None and 0 < run.server_cpu < run.client_cpu
    assert run.server_stats is not None and "cpu_seconds" in run.server_stats
    assert list(tmp_path.iterdir()) == []  # its folder went with it
    ideal = ideal_of(cell, settings)
    assert ideal is not None and 0 < ideal.elapsed <= run.elapsed


def test_an_external_server_has_no_ideal() -> None:
    codes = code_sets([], True, False, None)[0]
    cell = make_cell("curl", "url", None, codes)
    settings = BenchSettings(
        cells=(cell,), server=ServerOptions(seed=1), url="http://h"
    )
    assert ideal_of(cell, settings) is None


def test_startup_cpu_is_a_python_childs_floor(tmp_path: Path) -> None:
    codes = code_sets([], False, True, None)[0]
    cell = make_cell("asyncio", "delay", 1000, codes)
    settings = BenchSettings(cells=(cell,), server=ServerOptions(seed=1), retries=3)
    with Spawner() as spawner:
        floor = startup_cpu(cell, settings, tmp_path, spawner)
    # Start-up and imports cost a Python process tens of milliseconds at least;
    # retries to a refusing port would cost waiting, not CPU, and are not made.
    assert floor is not None and 0.02 < floor < 2.0
    assert list(tmp_path.iterdir()) == []
