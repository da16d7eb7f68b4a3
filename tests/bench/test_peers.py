"""curl and aria2c as bench rows: their command lines, their counts, a real run."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from flags2.bench.measure import Spawner
from flags2.bench.model import BenchSettings, Cell, CodeSet
from flags2.bench.peers import command, peer_record
from flags2.bench.run import run_once
from flags2.servers.launch import background
from flags2.servers.options import ServerOptions
from tests.bench.helpers import make_cell

BASE = "http://127.0.0.1:9/flags"
CODES = CodeSet("BR CN ZZ", ("BR", "CN", "ZZ"), ("BR", "CN", "ZZ"))


def test_curl_gets_the_cells_concurrency_and_one_output_per_code(
    tmp_path: Path,
) -> None:
    cell = make_cell("curl", server="url", max_req=30)
    argv = command(cell, BASE, tmp_path / "dest", tmp_path)
    assert argv[:4] == ["curl", "--parallel", "--parallel-max", "4"]
    assert argv.count("-o") == 4 and argv[-1] == f"{BASE}/ad/ad.gif"


def test_aria2c_gets_an_input_file_in_order_and_no_retries(tmp_path: Path) -> None:
    cell = make_cell("aria2c", server="url", max_req=2)
    argv = command(cell, BASE, tmp_path / "dest", tmp_path)
    assert argv[0] == "aria2c" and argv[argv.index("-j") + 1] == "2"
    assert "--max-tries=1" in argv
    listing = Path(argv[argv.index("-i") + 1]).read_text().splitlines()
    assert listing[:2] == [f"{BASE}/aa/aa.gif", "  out=AA.gif"] and len(listing) == 8


def test_curl_counts_come_from_its_status_lines() -> None:
    cell = make_cell("curl", n=5)
    record = peer_record(cell, BASE, 0.5, "200\n404\n200\n000\n")
    assert record["counts"] == {
        "OK": 2,
        "NOT_FOUND": 1,
        "ERROR": 2,
        "CANCELLED": 0,
        "SKIPPED": 0,
    }
    assert record["elapsed"] == 0.5 and record["flags"] == []


def test_curl_gets_the_cells_http_version_and_the_trusted_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    cell = make_cell("curl", server="url")
    assert not {"--http1.1", "--http2", "--cacert"} & set(
        command(cell, BASE, tmp_path, tmp_path)
    )  # the default: curl's own
    monkeypatch.setenv("SSL_CERT_FILE", "/tmp/ca.pem")
    for http, flag in [("1.1", "--http1.1"), ("2", "--http2")]:
        argv = command(dataclasses.replace(cell, http=http), BASE, tmp_path, tmp_path)
        assert flag in argv and argv[argv.index("--cacert") + 1] == "/tmp/ca.pem"
    aria2c = command(make_cell("aria2c", server="url"), BASE, tmp_path, tmp_path)
    assert "--ca-certificate=/tmp/ca.pem" in aria2c


def test_curl_says_its_protocols_and_connections() -> None:
    cell = make_cell("curl", n=4)
    over_h2 = peer_record(cell, BASE, 0.5, "200 2 1\n200 2 0\n404 2 0\n000 0 0\n")
    assert over_h2["http_versions"] == ["HTTP/2"] and over_h2["connections"] == 1
    assert over_h2["counts"]["OK"] == 2 and over_h2["counts"]["NOT_FOUND"] == 1
    over_1 = peer_record(cell, BASE, 0.5, "200 1.1 1\n200 1.1 1\n200 1.1 0\n")
    assert over_1["http_versions"] == ["HTTP/1.1"] and over_1["connections"] == 2


ARIA2C_OUTPUT = """\
12/01 10:05:00 [ERROR] CUID#8 - Download aborted. URI=http://h/flags/zz/zz.gif
Exception: [AbstractCommand.cc:351] errorCode=3 URI=http://h/flags/zz/zz.gif
  -> [HttpSkipResponseCommand.cc:218] errorCode=3 Resource not found
12/01 10:05:00 [ERROR] CUID#9 - Download aborted. URI=http://h/flags/ad/ad.gif
Exception: [AbstractCommand.cc:351] errorCode=2 URI=http://h/flags/ad/ad.gif

Download Results:
gid   |stat|avg speed  |  %|path/URI
======+====+===========+===+===================================================
e1120b|OK  |    11MiB/s|100|dest/BR.gif
ef2906|ERR |       0B/s|  -|dest/ZZ.gif
d29be6|OK  |        n/a|100|dest/CN.gif
ab12cd|ERR |       0B/s|  -|dest/AD.gif
"""


def test_aria2c_counts_a_404_apart_from_other_errors() -> None:
    cell = make_cell("aria2c", n=5)
    counts = peer_record(cell, BASE, 1.0, ARIA2C_OUTPUT)["counts"]
    assert counts == {"OK": 2, "NOT_FOUND": 1, "ERROR": 2, "CANCELLED": 0, "SKIPPED": 0}


@pytest.mark.skipif(shutil.which("aria2c") is None, reason="aria2c not installed")
def test_aria2c_downloads_like_flags2_from_a_real_server(tmp_path: Path) -> None:
    cell = Cell("aria2c", "url", 30, CODES, 3)
    with background(["local"]) as local, Spawner() as spawner:
        settings = BenchSettings(
            cells=(cell,), server=ServerOptions(seed=1), url=local.urls["local"]
        )
        run = run_once(cell, settings, tmp_path, spawner)
    assert run.counts == {
        "OK": 2, "NOT_FOUND": 1, "ERROR": 0, "CANCELLED": 0, "SKIPPED": 0,
    }  # fmt: skip
    assert run.exit_status == 0 and run.wall > 0
    assert run.client_cpu is not None and run.client_cpu > 0
    assert run.server_cpu is not None  # the bundled server tells its CPU
