"""A failure every flag would meet is said once, with its cause, and stops the run."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from flags2.codes import all_country_codes
from flags2.failures import Cause, cause_of, unresolvable
from flags2.fetch import is_transient
from flags2.runner import EXIT_ERRORS, load_mode, run
from flags2.settings import Settings
from flags2.tracker import SAME_CAUSE_STOP
from tests.helpers import MODES, FakeDNS, TLSServer

CODES = list(all_country_codes())


def _run(mode: str, base_url: str, dest: Path, **options: Any) -> int:
    settings = Settings(
        base_url=base_url, site="CUSTOM", dest=dest, timeout=5.0,
        concurrency=load_mode(mode).DEFAULT_CONCUR_REQ, **options,
    )  # fmt: skip
    return run(mode, CODES, settings, serve=False)


def _stopped_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("flags2: ")]
    assert len(lines) == 1, err  # said once
    assert "Traceback" not in err
    return lines[0]


def _tried(out: str) -> int:
    """Flags that ended in error (the rest were cancelled), from the report."""
    errors = [line for line in out.splitlines() if line.endswith(" errors.")]
    return int(errors[0].split()[0]) if errors else 0


@pytest.fixture
def untrusted(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)


# HTTP/2 offered (httpx2's transport: the probe fails) and --http1.1 (the lean one).
_BOTH_TRANSPORTS = pytest.mark.parametrize(
    "http2", [True, False], ids=["h2-offered", "http1.1"]
)


@pytest.mark.parametrize("mode", MODES)
@_BOTH_TRANSPORTS
def test_an_unknown_ca_is_said_once_and_stops_the_run(
    mode: str, http2: bool, untrusted: None, tls_server: TLSServer, dest: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert _run(mode, f"{tls_server.url}/flags", dest, http2=http2) == EXIT_ERRORS
    out, err = capsys.readouterr()
    line = _stopped_line(err)
    assert line.startswith(
        f"flags2: cannot verify the certificate of localhost:{tls_server.port}: "
    )
    assert "SSL_CERT_FILE" in line and "system store" in line
    assert line.endswith("; the run stops here")
    assert SAME_CAUSE_STOP <= _tried(out) <= 30
    assert list(dest.iterdir()) == []


@pytest.fixture(scope="module")
def other_name(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A CA, and a certificate it gives elsewhere.test (not localhost)."""
    import trustme

    folder = tmp_path_factory.mktemp("other")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    pem = ca.issue_cert("elsewhere.test").private_key_and_cert_chain_pem
    pem.write_to_path(str(folder / "server.pem"))
    return str(folder / "ca.pem"), str(folder / "server.pem")


@pytest.mark.parametrize("mode", MODES)
@_BOTH_TRANSPORTS
def test_a_certificate_for_another_name_is_said_once(
    mode: str, http2: bool, other_name: tuple[str, str], dest: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", other_name[0])  # trusted, wrong name
    with TLSServer(other_name[1]) as server:
        assert _run(mode, f"{server.url}/flags", dest, http2=http2) == EXIT_ERRORS
    out, err = capsys.readouterr()
    line = _stopped_line(err)
    assert f"cannot verify the certificate of localhost:{server.port}: " in line
    assert "mismatch" in line and "another host name" in line
    assert SAME_CAUSE_STOP <= _tried(out) <= 30


@pytest.mark.parametrize("mode", MODES)
def test_a_host_that_does_not_resolve_is_named_and_nothing_is_requested(
    mode: str, dest: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    lookups: list[str] = []
    real = socket.getaddrinfo

    def fake(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "flags.example":
            lookups.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    assert _run(mode, "https://flags.example/flags", dest) == EXIT_ERRORS
    out, err = capsys.readouterr()
    assert _stopped_line(err) == (
        "flags2: the host flags.example does not resolve: Name or service not"
        " known; the run stops here"
    )
    assert lookups == ["flags.example"]  # once, before any request
    assert f"{len(CODES)} cancelled." in out


@pytest.mark.parametrize("mode", MODES)
def test_a_refused_connection_is_said_once_and_stops_the_run(
    mode: str, closed_port: int, dest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(mode, f"http://127.0.0.1:{closed_port}/flags", dest) == EXIT_ERRORS
    out, err = capsys.readouterr()
    assert _stopped_line(err) == (
        f"flags2: 127.0.0.1:{closed_port} refused the connection; the run stops"
        " here; is the server running?"
    )
    assert SAME_CAUSE_STOP <= _tried(out) <= 30


@pytest.mark.parametrize("mode", MODES)
def test_a_proxy_that_does_not_answer_is_said_once(
    mode: str, closed_port: int, dest: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    proxy = f"http://127.0.0.1:{closed_port}"
    monkeypatch.setenv("HTTP_PROXY", proxy)
    assert _run(mode, "http://flags.invalid/flags", dest) == EXIT_ERRORS
    out, err = capsys.readouterr()
    line = _stopped_line(err)
    assert line.startswith(f"flags2: the proxy {proxy} does not answer: ")
    assert line.endswith("the run stops here; is the proxy running?")
    assert SAME_CAUSE_STOP <= _tried(out) <= 30


@pytest.mark.parametrize("mode", MODES)
def test_a_refused_connection_keeps_its_retries(
    mode: str, closed_port: int, dest: Path, tmp_path: Path
) -> None:
    settings = Settings(base_url=f"http://127.0.0.1:{closed_port}/flags",
                        dest=dest, retries=2)  # fmt: skip
    record = tmp_path / "r.json"
    assert run(mode, ["BR"], settings, json_path=str(record), serve=False) == 1
    assert '"attempts": 3' in record.read_text()


def test_an_untrusted_certificate_is_not_retried() -> None:
    request = httpx.Request("GET", "https://x/")
    bad = ssl.SSLCertVerificationError(1, "certificate verify failed")
    bad.verify_message = "unable to get local issuer certificate"
    exc = httpx.ConnectError("certificate verify failed", request=request)
    exc.__cause__ = bad
    assert cause_of(exc) == Cause(
        "certificate",
        "cannot verify the certificate of x: unable to get local issuer"
        " certificate; if you trust its CA, name it in SSL_CERT_FILE=ca.pem (or"
        " add it to the system store)",
    )
    assert not is_transient(exc)


def test_a_lookup_that_times_out_is_left_to_the_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def again(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", again)
    assert unresolvable("https://flags.example/flags", None) is None
    assert unresolvable("https://flags.example/flags", "http://proxy:3128") is None


def test_the_run_wide_lookup_asks_the_a_label_within_the_timeout(
    fake_dns: FakeDNS,
) -> None:
    # The name the requests will ask for (IDNA 2008, as httpx's Host header),
    # not the socket layer's IDNA 2003 reading (strasse.example).
    assert unresolvable("http://straße.example/flags", None, 1.0) == Cause(
        "dns",
        "the host xn--strae-oqa.example does not resolve: Name or service not known",
    )
    assert fake_dns.asked == ["xn--strae-oqa.example"]
    # A resolver slower than --timeout is left to the requests, and no later.
    fake_dns.names["slow.example"] = [("127.0.0.1", None)]
    fake_dns.delays["slow.example"] = 3.0
    started = time.perf_counter()
    assert unresolvable("http://slow.example/flags", None, 0.5) is None
    assert time.perf_counter() - started < 1.5
