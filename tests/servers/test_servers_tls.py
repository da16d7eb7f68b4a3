"""DELAY over TLS (flags2.servers.tls): the bundled flags, HTTP/2 and 1.1, the plan."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx2 as httpx
import pytest

from flags2.servers.launch import LaunchError
from flags2.servers.tls import available, background
from tests.helpers import flag_bytes

DELAYS = ["--seed", "7", "--min-delay", "0.01", "--max-delay", "0.02"]


def _trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


@pytest.mark.parametrize(("http2", "version"), [(True, "HTTP/2"), (False, "HTTP/1.1")])
def test_serves_the_bundled_flags_over_tls_in_either_protocol(
    tmp_path: Path, http2: bool, version: str
) -> None:
    ca = tmp_path / "ca.pem"
    with background(DELAYS, ca) as url:
        assert url.startswith("https://localhost:") and url.endswith("/flags")
        with httpx.Client(verify=_trusting(ca), http2=http2) as client:
            found = client.get(f"{url}/br/br.gif")
            missing = client.get(f"{url}/zz/zz.gif")
    assert found.status_code == 200 and found.http_version == version
    assert found.headers["content-type"] == "image/gif"
    assert found.content == flag_bytes("BR")
    assert missing.status_code == 404


def test_stats_count_the_peak_and_the_cpu(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    with background(DELAYS, ca) as url:
        stats_url = url.removesuffix("/flags") + "/_stats"
        with httpx.Client(verify=_trusting(ca), http2=True) as client:
            client.get(f"{url}/br/br.gif")
            stats = client.get(stats_url).json()
    assert stats["seed"] == 7 and stats["peak_in_flight"] == 1
    assert stats["in_flight"] == 0 and stats["cpu_seconds"] > 0


def test_a_server_that_cannot_start_is_a_launch_error(tmp_path: Path) -> None:
    with (
        pytest.raises(LaunchError, match="the TLS server failed to start"),
        background(["--min-delay", "x"], tmp_path / "ca.pem"),
    ):
        pass  # pragma: no cover


def test_available_when_hypercorn_and_trustme_import() -> None:
    assert available() is None  # both are in the test extra
