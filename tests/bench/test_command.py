"""``flags2 bench`` on the command line: tiny real runs end to end, bad options."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from flags2 import portable
from flags2.bench import defaults
from flags2.bench.command import bench as bench_command
from flags2.cli import app
from flags2.servers.launch import background
from tests.helpers import TLSServer, colour_pixels

runner = CliRunner()

CODES = ["BR", "CN", "DE", "JP", "ZZ"]  # 4 flags and one 404
TINY = ["--min-delay", "0.05", "--max-delay", "0.15", "--repeat", "1"]
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def invoke(*args: str) -> Result:
    return runner.invoke(app, ["bench", *args])


def error_line(result: Result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    return lines[-1]


def test_cli_defaults_are_the_benchs() -> None:
    params = inspect.signature(bench_command).parameters
    assert params["min_delay"].default == defaults.DEFAULT_MIN_DELAY
    assert params["max_delay"].default == defaults.DEFAULT_MAX_DELAY
    assert params["repeat"].default == defaults.DEFAULT_REPEAT


# -- end to end ----------------------------------------------------------------


@pytest.fixture(scope="module")
def delay_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Result, dict[str, Any], Path]:
    folder = tmp_path_factory.mktemp("bench")
    record, picture = folder / "bench.json", folder / "timeline.png"
    plot = ["--plot", str(picture)] if HAS_MATPLOTLIB else []
    # Each answer waits at least 0.25 s: time for all five asyncio requests to
    # reach the server before the first is answered, even on a loaded machine,
    # so the peak the server counts is the client's concurrency.
    slow = ["--min-delay", "0.25", "--max-delay", "0.3", "--repeat", "1"]
    args = [*CODES, "--modes", "sequential,asyncio", "--seed", "3", *slow]
    result = invoke(*args, "--json", str(record), *plot)
    return result, json.loads(record.read_text()), picture


def test_tiny_bench_prints_a_row_per_cell(
    delay_run: tuple[Result, dict[str, Any], Path],
) -> None:
    result, _, _ = delay_run
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("flags2 bench: 2 cells x 1 runs; seed 3 (replay")
    assert lines[1].split()[:5] == ["mode", "server", "-m", "codes", "OK/404/err"]
    assert lines[2].split()[:6] == ["sequential", "DELAY", "1", "BR", "CN", "DE"]
    assert lines[3].split()[:3] == ["asyncio", "DELAY", "5"]
    assert "4/1/0" in lines[2] and "4/1/0" in lines[3]


def test_tiny_bench_json_has_every_field(
    delay_run: tuple[Result, dict[str, Any], Path],
) -> None:
    _, data, _ = delay_run
    assert data["seed"] == 3
    assert set(data["machine"]) >= {"python", "cpu_count", "platform"}
    rows = data["rows"]
    assert [(r["mode"], r["server"], r["max_req"]) for r in rows] == [
        ("sequential", "DELAY", 1),
        ("asyncio", "DELAY", 5),
    ]
    for row in rows:
        assert row["codes"] == "BR CN DE JP ZZ"
        assert row["counts"] == {
            "OK": 4,
            "NOT_FOUND": 1,
            "ERROR": 0,
            "CANCELLED": 0,
            "SKIPPED": 0,
        }
        assert 0 < row["efficiency"] <= 1.05
        assert row["ideal"] > 0 and row["median_elapsed"] > 0
        assert 0 < row["peak_rss_mib"] < 500
        assert len(row["runs"]) == 1
        run = row["runs"][0]
        assert run["mode"] == row["mode"] and run["concurrency"] == row["max_req"]
        assert [f["cc"] for f in run["flags"]] == CODES
    sequential, asyncio = rows
    assert sequential["speedup"] == 1.0
    assert asyncio["speedup"] > 0  # how much faster is measured, never asserted
    # Concurrency counted at the server, not inferred from a speed-up.
    assert sequential["peak_in_flight"] == 1
    assert asyncio["peak_in_flight"] == 5  # the server saw all five at once


def test_tiny_bench_json_has_client_and_server_cpu_for_every_run(
    delay_run: tuple[Result, dict[str, Any], Path],
) -> None:
    result, data, _ = delay_run
    for row in data["rows"]:
        for run in row["runs"]:
            assert set(run["cpu"]) == {"client", "server"}
            assert run["cpu"]["client"] > 0 and run["cpu"]["server"] > 0
        # A Python child's start-up is most of its CPU: measured apart, left out.
        # Of the run's order, not equal to it: a fresh venv's first children
        # also compile bytecode, and the machine's load moves either figure.
        assert 0 < row["client_startup_cpu"] < row["runs"][0]["cpu"]["client"] * 10
        assert row["cpu_per_request"]["client"] >= 0
        assert isinstance(row["cpu_bound"], bool)
    assert "CPU ms/req" in result.output.splitlines()[1]


@pytest.mark.skipif(
    not HAS_MATPLOTLIB, reason="matplotlib not installed (flags2[plot])"
)
def test_tiny_bench_draws_its_timeline(
    delay_run: tuple[Result, dict[str, Any], Path],
) -> None:
    from flags2.bench.plot import _COLOURS

    _, _, picture = delay_run
    assert picture.read_bytes().startswith(b"\x89PNG")
    # 8 lanes of flags saved and 2 of ZZ not found; a legend swatch is ~400 px.
    assert colour_pixels(picture, _COLOURS["OK"]) > 8 * 400
    assert colour_pixels(picture, _COLOURS["NOT_FOUND"]) > 2 * 400


def test_error_server_errors_are_the_faults_it_injected(tmp_path: Path) -> None:
    record = tmp_path / "bench.json"
    common = [*CODES, "--modes", "asyncio", "--servers", "error", "--seed", "3"]
    common += [*TINY, "--error-rate", "0.5", "--json", str(record)]
    result = invoke(*common)
    assert result.exit_code == 0, result.output  # expected: the plan faults 3
    row = json.loads(record.read_text())["rows"][0]
    assert (
        row["counts"]["ERROR"] == row["faults_injected"] == row["planned_errors"] == 3
    )
    retried = invoke(*common, "--retries", "4")
    assert retried.exit_code == 0, retried.output
    row = json.loads(record.read_text())["rows"][0]
    assert row["counts"]["ERROR"] == row["planned_errors"] == 0
    assert row["faults_injected"] >= 3
    assert row["runs"][0]["flags"][0]["attempts"] > 1  # BR was faulted first


def test_unexpected_errors_exit_1(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/flags"
    result = invoke("BR", "CN", "--url", url, "--modes", "asyncio", "--repeat", "1")
    assert result.exit_code == 1, result.output
    row = result.output.splitlines()[2]
    assert "0/0/2 !" in row and "URL" in row
    assert "errors beyond those the seeded plan makes unavoidable" in result.output


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_url_with_curl_shows_the_ratio_to_curl(tmp_path: Path) -> None:
    record = tmp_path / "bench.json"
    with background(["local"]) as local:
        result = invoke(
            *CODES, "--url", local.urls["local"], "--modes", "asyncio,curl",
            "--repeat", "1", "--json", str(record),
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "vs curl" in result.output.splitlines()[1]
    asyncio, curl = json.loads(record.read_text())["rows"]
    assert curl["mode"] == "curl" and curl["max_req"] == 30 and curl["concurrency"] == 5
    assert curl["counts"] == asyncio["counts"] == {
        "OK": 4, "NOT_FOUND": 1, "ERROR": 0, "CANCELLED": 0, "SKIPPED": 0,
    }  # fmt: skip
    assert asyncio["vs_curl"] > 0 and asyncio["ideal"] is None
    assert asyncio["efficiency"] is None and asyncio["peak_in_flight"] is None


@pytest.mark.skipif(
    shutil.which("curl") is None or shutil.which("aria2c") is None,
    reason="curl or aria2c not installed",
)
def test_url_with_curl_and_aria2c_prints_a_row_for_each(tmp_path: Path) -> None:
    record = tmp_path / "bench.json"
    with background(["local"]) as local:
        result = invoke(
            *CODES, "--url", local.urls["local"], "--modes", "asyncio,curl,aria2c",
            "--repeat", "1", "--json", str(record),
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].split()[-4:] == ["vs", "curl", "vs", "aria2c"]
    assert [line.split()[0] for line in lines[2:5]] == ["asyncio", "curl", "aria2c"]
    rows = json.loads(record.read_text())["rows"]
    for row in rows:
        assert row["counts"] == {
            "OK": 4,
            "NOT_FOUND": 1,
            "ERROR": 0,
            "CANCELLED": 0,
            "SKIPPED": 0,
        }
        assert row["runs"][0]["cpu"]["client"] > 0
    assert rows[0]["vs_curl"] > 0 and rows[0]["vs_aria2c"] > 0


@pytest.mark.parametrize("peer", ["curl", "aria2c"])
def test_a_peer_not_installed_is_one_line_and_exit_2(
    peer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name: None if name == peer else real(name)
    )
    result = invoke(
        "BR", "--url", "http://127.0.0.1:9/flags", "--modes", f"asyncio,{peer}"
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"flags2 bench: --modes {peer}: {peer} is not installed (not on PATH)"
    ]


@pytest.fixture(scope="module")
def tls_bench(
    test_ca: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Result, dict[str, Any]]:
    """asyncio and threadpool (and curl) at --http 1.1,2 on hypercorn over TLS."""
    record = tmp_path_factory.mktemp("tls-bench") / "bench.json"
    modes = "asyncio,threadpool" + (",curl" if shutil.which("curl") else "")
    with (
        pytest.MonkeyPatch.context() as patch,
        TLSServer(test_ca[1]) as server,
    ):
        patch.setenv("SSL_CERT_FILE", test_ca[0])  # the children trust the test CA
        result = invoke(
            *CODES, "--url", f"{server.url}/flags", "--http", "1.1,2",
            "--modes", modes, "-m", "4", "--repeat", "1", "--json", str(record),
        )  # fmt: skip
    return result, json.loads(record.read_text())


def test_http_rows_per_protocol_side_by_side(
    tls_bench: tuple[Result, dict[str, Any]],
) -> None:
    result, data = tls_bench
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].split()[:5] == ["mode", "server", "HTTP", "-m", "conns"]
    cells = [line.split()[:4] for line in lines[2:6]]
    assert cells == [
        ["asyncio", "URL", "1.1", "4"],
        ["asyncio", "URL", "2", "4"],
        ["threadpool", "URL", "1.1", "4"],
        ["threadpool", "URL", "2", "4"],
    ]
    rows = data["rows"]
    for row in rows:
        assert row["counts"]["OK"] == 4 and row["counts"]["NOT_FOUND"] == 1
        assert row["http_versions"] == [f"HTTP/{row['http']}"]
        if row["mode"] != "curl":  # curl reports no per-flag records
            flags = row["runs"][0]["flags"]
            assert {f["http_version"] for f in flags} == {f"HTTP/{row['http']}"}


def test_http_rows_show_the_connections_each_run_used(
    tls_bench: tuple[Result, dict[str, Any]],
) -> None:
    result, data = tls_bench
    by_cell = {(r["mode"], r["http"]): r for r in data["rows"]}
    for mode in ("asyncio", "threadpool"):
        one, two = by_cell[(mode, "1.1")], by_cell[(mode, "2")]
        # HTTP/2: every stream on one connection; HTTP/1.1: one per request
        # in flight, at most -m 4 and at least 1.
        assert two["connections"] == two["runs"][0]["connections"] == 1
        assert 1 <= one["connections"] <= 4
    lines = result.output.splitlines()
    assert lines[3].split()[4] == "1"  # asyncio HTTP/2's conns column
    if ("curl", "2") in by_cell:  # curl at --http2 multiplexes too
        curl_one, curl_two = by_cell[("curl", "1.1")], by_cell[("curl", "2")]
        assert curl_two["http_versions"] == ["HTTP/2"] and curl_two["connections"] >= 1
        assert curl_one["http_versions"] == ["HTTP/1.1"]
        assert curl_one["counts"]["OK"] == 4 and curl_two["counts"]["OK"] == 4
        assert by_cell[("asyncio", "2")]["vs_curl"] > 0


def test_the_httpx2_floor_is_measured_in_the_same_bench(
    tls_bench: tuple[Result, dict[str, Any]],
) -> None:
    result, data = tls_bench
    floor = data["httpx2_floor"]
    assert floor["requests"] >= 100 and floor["body_bytes"] > 1000
    assert 0 < floor["client"] < 0.05 and 0 < floor["async_client"] < 0.05
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith("httpx2 floor")]
    assert f"{floor['client'] * 1000:.2f}" in line


# -- bad options ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--repeat", "0"], "--repeat must be >= 1"),
        (["--modes", "trio"], "--modes: unknown mode 'trio'"),
        (["--modes", "curl"], "--modes curl needs --url"),
        (["--modes", "asyncio,aria2c"], "--modes aria2c needs --url"),
        (["--servers", "remote"], "--servers: unknown server 'remote'"),
        (["-m", "5,x"], "--max-req: 'x' is not an integer"),
        (["-m", "0"], "--max-req: each value must be >= 1"),
        (["--min-delay", "2", "--max-delay", "1"], "max delay (1) is below"),
        (["--faults", "gremlins"], "unknown fault 'gremlins'"),
        (["--url", "ftp://host/flags"], "not an http(s):// base URL"),
        (["--url", "http://h/flags", "--servers", "delay"], "exclude each other"),
        (["--plot", "timeline.pdf"], "must end in .png or .svg"),
        (["--json", "/no/such/folder/b.json"], "does not exist"),
        (["--seed", "-1"], "--seed must be >= 0"),
        (["1x"], "invalid country code '1x'"),
        (["--timeout", "0"], "--timeout must be a positive number"),
        (["--http", "3"], "--http: unknown version '3' (choose from 1.1, 2)"),
        (["--http", ","], "--http: no version given"),
        (["--http", "2"], "--http 2 needs an https --url"),
        (["--http", "2", "--servers", "tls,delay"], "--http 2 needs an https"),
        (["--http", "1.1,2", "--url", "http://h/flags"], "--http 2 needs an https"),
        (
            ["--http", "2", "--url", "https://h/flags", "--modes", "aria2c"],
            "aria2c speaks HTTP/1.1 only",
        ),
    ],
)
def test_bad_options_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert line.startswith("Error: ") and message in line, result.output


def test_plot_without_matplotlib_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    result = invoke("--plot", str(tmp_path / "t.png"))
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "flags2 bench: --plot needs matplotlib: pip install 'flags2[plot]'"
    ]


def test_a_password_in_url_is_never_shown(closed_port: int, tmp_path: Path) -> None:
    record = tmp_path / "bench.json"
    url = f"http://me:S3cret@127.0.0.1:{closed_port}/flags"
    result = invoke("BR", "--url", url, "--modes", "asyncio", "--repeat", "1",
                    "--json", str(record))  # fmt: skip
    assert result.exit_code == 1, result.output
    assert f"server http://me:***@127.0.0.1:{closed_port}/flags" in result.output
    assert "S3cret" not in result.output
    assert "S3cret" not in record.read_text()


def test_processpool_and_map_rows_show_the_whole_trees_memory(tmp_path: Path) -> None:
    record = tmp_path / "bench.json"
    result = invoke(
        *CODES, "--servers", "local", "--modes", "threadpool,processpool+map",
        "-m", "3", "--seed", "3", "--json", str(record), *TINY,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].split()[5:8] == ["elapsed", "wall", "start-up"]
    assert lines[3].split()[:3] == ["processpool+map", "LOCAL", "3"]
    assert "4/1/0" in lines[3]
    assert any(
        line.startswith("RSS MiB: the peak memory of the whole") for line in lines
    )
    threads, processes = json.loads(record.read_text())["rows"]
    run = processes["runs"][0]
    pool = run["pool"]
    assert pool["workers"] == 3 and pool["startup"] > 0
    assert pool["workers_peak_rss_mib"] > 0
    # The tree: the parent's own peak plus its 3 workers', more than one process.
    tree = pool["parent_peak_rss_mib"] + pool["workers_peak_rss_mib"]
    assert processes["peak_rss_mib"] == pytest.approx(tree, abs=0.2)
    assert processes["peak_rss_mib"] > threads["peak_rss_mib"]
    assert processes["median_startup"] > 0
    # --map: each result taken in code order, never before it finished.
    flags = run["flags"]
    assert [f["cc"] for f in flags] == CODES
    taken = [f["consumed"] for f in flags]
    assert taken == sorted(taken)
    assert all(f["consumed"] >= f["finished"] for f in flags)


def test_the_bundled_tls_server_benches_both_protocols_offline(tmp_path: Path) -> None:
    record = tmp_path / "bench.json"
    result = invoke(
        *CODES, "--servers", "tls", "--http", "1.1,2", "--modes", "asyncio",
        "-m", "4", "--seed", "3", *TINY, "--json", str(record),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[:5] for line in lines[2:4]] == [
        ["asyncio", "DELAY-TLS", "1.1", "4", "4"],
        ["asyncio", "DELAY-TLS", "2", "4", "1"],
    ]
    for row in json.loads(record.read_text())["rows"]:
        assert row["http_versions"] == [f"HTTP/{row['http']}"]
        assert row["counts"]["OK"] == 4 and row["counts"]["NOT_FOUND"] == 1
        # DELAY's plan gives the ideal; the server counts what it saw at once.
        assert 0 < row["efficiency"] <= 1.05 and row["peak_in_flight"] >= 1
        assert row["runs"][0]["cpu"]["server"] > 0


def test_tls_server_without_its_extra_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flags2.servers.tls as tls

    monkeypatch.setattr(tls, "available", lambda: "needs X: pip install 'flags2[tls]'")
    result = invoke("--servers", "tls")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "flags2 bench: --servers tls: needs X: pip install 'flags2[tls]'"
    ]


def test_the_runs_download_into_memory_where_the_system_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scratch folder of every run (each run's -d) is made in memory_dir:
    # the folder changes while the bench runs, and nothing is left in it.
    ram = tmp_path / "ram"
    ram.mkdir()
    os.utime(ram, (0, 0))
    monkeypatch.setattr(portable, "memory_dir", lambda: str(ram))
    result = invoke("BR", "--modes", "sequential", "--repeat", "1", "--seed", "3",
                    "--min-delay", "0", "--max-delay", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert ram.stat().st_mtime > 0
    assert list(ram.iterdir()) == []
