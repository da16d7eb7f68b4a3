from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from flags2.clientplan import (
    CONNECTIONS_PER_CLIENT,
    MAX_REDIRECTS,
    lean_transport_fits,
    split_slots,
)
from flags2.codes import all_country_codes
from flags2.runner import load_mode
from tests.helpers import MODES, TLSServer, flag_bytes, recorded_run, serve_flags


@pytest.mark.parametrize("concurrency", [1, 5, 31, 32, 33, 100, 999, 1000])
def test_slots_add_up_and_no_client_is_too_big(concurrency: int) -> None:
    sizes = split_slots(concurrency)
    assert sum(sizes) == concurrency
    assert max(sizes) <= CONNECTIONS_PER_CLIENT
    assert max(sizes) - min(sizes) <= 1  # as even as possible


def test_the_lean_transport_fits_plain_http_without_a_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert lean_transport_fits("http://127.0.0.1:8000/flags")
    assert not lean_transport_fits("https://www.fluentpython.com/data/flags")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    assert not lean_transport_fits("http://127.0.0.1:8000/flags")


# -- https runs: HTTP/2 by ALPN, --http1.1, stream caps, redirects --------------


def _https_run(
    mode: str, base_url: str, dest: Path, json_path: Path, **options: Any
) -> tuple[int, dict[str, Any]]:
    """A whole run (runner.run) with its --json record read back."""
    fields: dict[str, Any] = {"concurrency": load_mode(mode).MAX_CONCUR_REQ}
    fields.update(options)
    codes = fields.pop("codes", ["BR", "CN", "IN", "ZZ"])
    return recorded_run(mode, base_url, dest, json_path, codes, **fields)


@pytest.mark.parametrize("mode", MODES)
def test_https_negotiates_http2_and_says_so(
    mode: str, trusted: str, tls_server: TLSServer, dest: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    code, record = _https_run(mode, f"{tls_server.url}/flags", dest, tmp_path / "r")
    assert code == 0
    assert record["counts"]["OK"] == 3 and record["counts"]["NOT_FOUND"] == 1
    assert {flag["http_version"] for flag in record["flags"]} == {"HTTP/2"}
    assert tls_server.versions == {"2"}
    # One connection carries every stream; a process pool's workers each
    # have their own clients, so there it is one per worker at most.
    workers = record["concurrency"] if mode == "processpool" else 1
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith("HTTP/2 over ")] in (
        [f"HTTP/2 over {n} connection{'s' if n > 1 else ''}."]
        for n in range(1, workers + 1)
    )
    assert (dest / "BR.gif").read_bytes() == flag_bytes("BR")


@pytest.mark.parametrize("mode", MODES)
def test_http1_1_forces_http_1_1(
    mode: str, trusted: str, tls_server: TLSServer, dest: Path, tmp_path: Path
) -> None:
    code, record = _https_run(
        mode, f"{tls_server.url}/flags", dest, tmp_path / "r", http2=False
    )
    assert code == 0 and record["counts"]["OK"] == 3
    assert {flag["http_version"] for flag in record["flags"]} == {"HTTP/1.1"}
    assert tls_server.versions == {"1.1"}


@pytest.mark.parametrize("mode", ["threadpool", "asyncio"])
def test_a_small_stream_cap_is_a_wait_never_an_error(
    mode: str, trusted: str, test_ca: tuple[str, str], dest: Path, tmp_path: Path
) -> None:
    with TLSServer(test_ca[1], max_streams=4) as server:
        code, record = _https_run(
            mode, f"{server.url}/flags", dest, tmp_path / "r",
            codes=list(all_country_codes()), concurrency=1000,
        )  # fmt: skip
    assert code == 0, [f["error"] for f in record["flags"] if f["error"]][:3]
    assert record["counts"]["OK"] == 194
    assert {flag["http_version"] for flag in record["flags"]} == {"HTTP/2"}
    assert server.peak > 1  # streams did overlap


@pytest.mark.parametrize("mode", MODES)
def test_an_http1_1_only_server_still_serves_every_flag(
    mode: str, trusted: str, test_ca: tuple[str, str], dest: Path, tmp_path: Path
) -> None:
    with TLSServer(test_ca[1], protocols=("http/1.1",)) as server:
        code, record = _https_run(mode, f"{server.url}/flags", dest, tmp_path / "r")
    assert code == 0 and record["counts"]["OK"] == 3
    assert {flag["http_version"] for flag in record["flags"]} == {"HTTP/1.1"}


# HTTP/2 (httpx2's transport) and --http1.1 (the lean one, over TLS).
_BOTH_TRANSPORTS = pytest.mark.parametrize(
    "http2", [True, False], ids=["h2", "http1.1"]
)


@pytest.mark.parametrize("mode", MODES)
@_BOTH_TRANSPORTS
def test_a_redirect_on_https_is_followed_and_recorded(
    mode: str, http2: bool, trusted: str, tls_server: TLSServer, dest: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    code, record = _https_run(
        mode, f"{tls_server.url}/moved", dest, tmp_path / "r", codes=["BR"],
        http2=http2,
    )  # fmt: skip
    assert code == 0
    (flag,) = record["flags"]
    assert flag["status"] == "OK"
    assert flag["http_version"] == ("HTTP/2" if http2 else "HTTP/1.1")
    assert flag["final_url"] == f"{tls_server.url}/flags/br/br.gif"
    assert (dest / "BR.gif").read_bytes() == flag_bytes("BR")


@pytest.mark.parametrize("mode", MODES)
@_BOTH_TRANSPORTS
def test_a_redirect_from_https_to_http_is_refused(
    mode: str, http2: bool, trusted: str, tls_server: TLSServer,
    httpserver: HTTPServer, dest: Path, tmp_path: Path,
) -> None:  # fmt: skip
    serve_flags(httpserver, ["BR"])
    code, record = _https_run(
        mode, f"{tls_server.url}/down", dest, tmp_path / "r", codes=["BR"],
        http2=http2,
    )  # fmt: skip
    assert code == 1
    (flag,) = record["flags"]
    assert flag["status"] == "ERROR" and flag["attempts"] == 1
    assert flag["error"].startswith("refused a redirect from https to plain http (")
    assert not httpserver.log, "the plain-http request must never be sent"
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("mode", MODES)
def test_redirects_are_capped(mode: str, httpserver: HTTPServer, dest: Path,
                              tmp_path: Path) -> None:  # fmt: skip
    httpserver.expect_request("/loop/br/br.gif").respond_with_data(
        "", status=302, headers={"Location": "/loop/br/br.gif"}
    )
    code, record = _https_run(
        mode, httpserver.url_for("/loop"), dest, tmp_path / "r", codes=["BR"]
    )
    assert code == 1
    assert "Exceeded maximum allowed redirects" in record["flags"][0]["error"]
    assert len(httpserver.log) == MAX_REDIRECTS + 1
