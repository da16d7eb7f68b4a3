"""Ctrl-C in every mode: prompt stop, final report, exit 130, no temporaries.

The client runs as a real process (its installed ``flags2`` entry point) and
gets a real SIGINT while its requests hang on a slow server.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.conftest import MODES, flag_bytes, leftovers


@pytest.mark.parametrize("mode", MODES)
def test_ctrl_c_stops_promptly_and_cleans_up(
    mode: str, httpserver: HTTPServer, dest: Path
) -> None:
    release = threading.Event()
    body = flag_bytes("BR")
    arrived: list[str] = []

    def slow(request: Request) -> Response:
        arrived.append(request.path)
        if request.path.endswith("/ad/ad.gif"):
            return Response(body, content_type="image/gif")  # one quick success
        release.wait(20)
        return Response(body, content_type="image/gif")

    httpserver.expect_request(re.compile("/flags/.*")).respond_with_handler(slow)
    flags2 = shutil.which("flags2")
    assert flags2 is not None, "the flags2 entry point is not installed"
    args = [flags2, "download", "-e", "--mode", mode, "-m", "20",
            "-s", httpserver.url_for("/flags"), "-d", str(dest)]  # fmt: skip
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 15
        while not arrived and time.monotonic() < deadline:
            time.sleep(0.05)
        assert arrived, "the client never reached the server"
        time.sleep(0.2)  # let the concurrent modes fill their slots
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=10)
        stopped_after = time.monotonic() - sent
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert stopped_after < 3.0  # the spec says 1 s; the margin is for noisy CI
    assert "Traceback" not in err
    assert re.search(r"^\s*\d+ cancelled\.$", out, re.M), out
    assert "Elapsed time:" in out
    assert leftovers(dest) == []
    assert [p.name for p in dest.iterdir()] in ([], ["AD.gif"])
