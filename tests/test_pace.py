"""--rate: parsed like curl's, and at most N request starts per period, evenly."""

from __future__ import annotations

import math
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flags2.codes import all_country_codes
from flags2.pace import RateLimit, parse_rate
from flags2.status import DownloadStatus
from tests.helpers import (
    MODES,
    RunFn,
    flag_bytes,
    installed,
    leftovers,
    real_metadata,
    serve_flags,
    serve_metadata,
)


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("20/s", RateLimit(20, 1)),
        ("90/m", RateLimit(90, 60)),
        ("3/h", RateLimit(3, 3600)),
        ("1/d", RateLimit(1, 86400)),
        (" 5 / S ", RateLimit(5, 1)),
    ],
)
def test_rates_read_like_curls(text: str, rate: RateLimit) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0/s", "at least 1 request per period"),
        ("abc", "is not N/s, N/m or N/h"),
        ("5/x", "the period must be s, m, h or d, not 'x'"),
        ("-5/s", "is not N/s, N/m or N/h"),
        ("2.5/s", "is not N/s, N/m or N/h"),
        ("5", "is not N/s, N/m or N/h"),  # curl would read it as 5 an hour
        ("", "is not N/s, N/m or N/h"),
    ],
)
def test_bad_rates_say_why(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_rate(text)


def test_a_rate_shows_as_typed_and_in_words() -> None:
    assert str(RateLimit(20, 1)) == "20/s" and str(RateLimit(3, 3600)) == "3/h"
    assert RateLimit(20, 1).describe() == "20 requests per second"
    assert RateLimit(1, 86400).describe() == "1 request per day"


def arrivals(httpserver: HTTPServer, *, metadata: bool = False) -> list[float]:
    """Serve every flag (and its metadata), noting when each request arrives."""
    seen: list[float] = []
    lock = threading.Lock()

    def handler(request: Request) -> Response:
        with lock:
            seen.append(time.monotonic())
        cc = request.path.split("/")[2]
        if request.path.endswith("metadata.json"):
            return Response(real_metadata(cc), content_type="application/json")
        return Response(flag_bytes(cc), content_type="image/gif")

    paths = "(metadata.json|[a-z]{2}.gif)" if metadata else "[a-z]{2}.gif"
    httpserver.expect_request(
        re.compile(f"/flags/[a-z]{{2}}/{paths}")
    ).respond_with_handler(handler)
    return seen


# Time IS the behaviour here: 40 starts at 20/s take 39 gaps of 50 ms (1.95 s);
# the margins are wide for these noisy machines.
def test_rate_20_per_second_paces_40_flags_in_every_mode(
    httpserver: HTTPServer, run_mode: RunFn, mode: str
) -> None:
    seen = arrivals(httpserver)
    codes = sorted(all_country_codes())[:40]
    started = time.perf_counter()
    tracker = run_mode(codes, concurrency=40, rate=RateLimit(20, 1))
    elapsed = time.perf_counter() - started
    assert tracker.counter[DownloadStatus.OK] == 40
    # A process pool's start-up (40 interpreters) is not the pace's to bound.
    assert 1.8 <= elapsed <= (math.inf if mode == "processpool" else 4.0), elapsed
    seen.sort()
    # No burst: any 21 starts in a row span about a second, never much less.
    assert min(b - a for a, b in zip(seen, seen[20:], strict=False)) > 0.8


def test_every_request_counts_metadata_too(
    httpserver: HTTPServer, run_mode: RunFn, dest: Path, mode: str
) -> None:
    seen = arrivals(httpserver, metadata=True)
    codes = sorted(all_country_codes())[:20]
    started = time.perf_counter()
    tracker = run_mode(codes, concurrency=20, names=True, rate=RateLimit(20, 1))
    elapsed = time.perf_counter() - started
    assert tracker.counter[DownloadStatus.OK] == 20
    assert len(seen) == 40  # 20 metadata.json and 20 GIFs, 50 ms apart
    assert 1.8 <= elapsed <= (math.inf if mode == "processpool" else 4.0), elapsed


def test_retries_count_too(httpserver: HTTPServer, run_mode: RunFn) -> None:
    for _ in range(4):
        httpserver.expect_ordered_request("/flags/br/br.gif").respond_with_data(
            b"", status=503
        )
    serve_flags(httpserver, ["BR"])
    started = time.perf_counter()
    br = run_mode(["BR"], retries=4, rate=RateLimit(4, 1)).results["BR"]
    elapsed = time.perf_counter() - started
    assert br.status is DownloadStatus.OK and br.attempts == 5
    assert elapsed >= 0.9  # five starts at 4/s: four gaps of 250 ms at least


def test_no_rate_no_limiter_import() -> None:
    code = (
        "import sys, flags2.cli, flags2.fetch, flags2.tracker;"
        " print('pyrate_limiter' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("mode", MODES)
def test_ctrl_c_while_waiting_on_the_rate_stops_promptly(
    mode: str, httpserver: HTTPServer, dest: Path
) -> None:
    seen = arrivals(httpserver)
    flags2 = installed("flags2")
    args = [flags2, "download", "-a", "-l", "5", "--mode", mode, "--rate", "1/m",
            "-s", httpserver.url_for("/flags"), "-d", str(dest)]  # fmt: skip
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 15
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seen, "the client never reached the server"
        time.sleep(0.5)  # the others now wait a minute for the limiter
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=10)
        stopped_after = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert stopped_after < 3.0  # a prompt stop; the margin is for noisy CI
    assert "Traceback" not in err
    assert len(seen) == 1
    assert re.search(r"^\s*4 cancelled\.$", out, re.M), out
    assert leftovers(dest) == []


def test_names_and_rate_record_still_draws_a_timeline(
    httpserver: HTTPServer, dest: Path, tmp_path: Path
) -> None:
    """The bench's timeline reads a --names --skip-existing run's record."""
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    import json

    from typer.testing import CliRunner

    from flags2.bench.plot import Panel, draw_timeline
    from flags2.cli import app

    serve_flags(httpserver, ["BR", "CN"])
    serve_metadata(httpserver, {cc: real_metadata(cc) for cc in ["BR", "CN"]})
    (dest / "Brazil.gif").write_bytes(flag_bytes("BR"))
    record_path = tmp_path / "run.json"
    result = CliRunner().invoke(
        app,
        ["download", "BR", "CN", "ZZ", "--names", "--skip-existing", "--rate",
         "50/s", "-d", str(dest), "-s", httpserver.url_for("/flags"),
         "--json", str(record_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[3] == "At most 50 requests per second will be started."
    assert "  1 flag skipped (already saved)." in lines
    record = json.loads(record_path.read_text())
    assert [f["status"] for f in record["flags"]] == ["SKIPPED", "OK", "NOT_FOUND"]
    assert [f["file"] for f in record["flags"]] == ["Brazil.gif", "China.gif", None]
    picture = tmp_path / "timeline.png"
    draw_timeline([Panel("asyncio --names", record["flags"])], picture)
    assert picture.stat().st_size > 5000
