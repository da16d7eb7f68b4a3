"""TLS session resumption: the probe's session seeds the lean transports."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx2 as httpx
import pytest

from flags2.aioclients import AsyncPlainHTTPTransport
from flags2.clientplan import server_alpn
from flags2.clients import PlainHTTPTransport
from flags2.settings import Settings
from flags2.status import DownloadStatus
from flags2.tls import Sessions, lean_context, negotiated
from tests.helpers import KeptAlive, RunFn, TLSServer


def _port(server: KeptAlive) -> int:
    return int(httpx.URL(server.url).port or 443)


def _probe_keeps_a_session(
    server: KeptAlive,
    sessions: Sessions,
    probe: Callable[[], str | None] | None = None,
) -> str | None:
    """`probe` (by default negotiated's offer of both) until `sessions` holds
    `server`'s session, at most thrice; its last answer."""
    # A loaded machine can delay the server's ticket past the probe's short
    # wait; three probes without one would be a fault, not the load.
    if probe is None:

        def probe() -> str | None:
            return negotiated(server.url, lean_context(True), 5.0, sessions)

    answer = None
    for _ in range(3):
        answer = probe()
        if sessions.get("localhost", _port(server)):
            break
    return answer


def test_the_probe_keeps_an_http1_servers_tls13_session(
    tls_one_a_connection: KeptAlive,
) -> None:
    server = tls_one_a_connection
    sessions = Sessions()
    assert _probe_keeps_a_session(server, sessions) == "http/1.1"
    session = sessions.get("localhost", _port(server))
    assert session is not None and session.has_ticket
    assert sessions.get("localhost", _port(server) + 1) is None  # per server


def test_the_probe_keeps_nothing_for_http2(trusted: str, tls_server: TLSServer) -> None:
    # HTTP/2 goes by httpx2's transport: no ticket is waited for.
    sessions = Sessions()
    assert negotiated(tls_server.url, lean_context(True), 5.0, sessions) == "h2"
    assert sessions.get("localhost", tls_server.port) is None


def test_a_resumed_connection_does_not_replace_the_kept_session(
    tls_one_a_connection: KeptAlive,
) -> None:
    server = tls_one_a_connection
    sessions = Sessions()
    transport = PlainHTTPTransport(verify=lean_context(True), sessions=sessions)
    with httpx.Client(transport=transport) as client:
        assert client.get(server.url + "/br/br.gif").status_code == 200
        first = sessions.get("localhost", _port(server))
        assert first is not None  # kept after the first answer
        assert client.get(server.url + "/br/br.gif").status_code == 200
        assert sessions.get("localhost", _port(server)) is first
    assert server.resumed == {1: False, 2: True}


@pytest.mark.parametrize("kind", ["blocking", "async"])
def test_each_transport_resumes_its_first_connections_session(
    kind: str, tls_one_a_connection: KeptAlive
) -> None:
    # No probe here (a transport on its own): the first answer's ticket
    # serves every later connection to that server.
    server = tls_one_a_connection
    url = server.url + "/br/br.gif"
    if kind == "blocking":
        with httpx.Client(transport=PlainHTTPTransport()) as client:
            statuses = [client.get(url).status_code for _ in range(3)]
    else:

        async def thrice() -> list[int]:
            async with httpx.AsyncClient(transport=AsyncPlainHTTPTransport()) as client:
                return [(await client.get(url)).status_code for _ in range(3)]

        statuses = asyncio.run(thrice())
    assert statuses == [200] * 3
    assert server.resumed == {1: False, 2: True, 3: True}


def test_a_run_resumes_the_probes_session(
    run_mode: RunFn, mode: str, tls_one_a_connection: KeptAlive
) -> None:
    # Connection 1 is the ALPN probe (a full handshake); every connection of
    # the run after it resumes its session, but where a probe's ticket came
    # too late (a loaded machine) or a process-pool worker, which gets no
    # session from its parent, makes its first connection in full.
    server = tls_one_a_connection
    tracker = run_mode(["BR", "CN", "IN"], base_url=server.url, concurrency=1)
    assert tracker.counter[DownloadStatus.OK] == 3
    assert server.connections == 4
    assert server.resumed[1] is False
    run = [server.resumed[number] for number in (2, 3, 4)]
    assert run.count(False) <= 1 and run[1:] == [True, True], mode


def test_under_http1_1_the_probe_offers_http1_1_alone_and_keeps_its_session(
    tls_server: TLSServer, tls_one_a_connection: KeptAlive, tmp_path: Path
) -> None:
    # tls_server speaks h2 when offered it: answered http/1.1, h2 was not.
    plain = Settings(base_url=tls_server.url, dest=tmp_path, http2=False)
    assert server_alpn(plain, lean_context(True)) == "http/1.1"
    server = tls_one_a_connection
    settings = Settings(base_url=server.url, dest=tmp_path, http2=False)
    sessions = Sessions()
    answer = _probe_keeps_a_session(
        server, sessions, lambda: server_alpn(settings, lean_context(True), sessions)
    )
    assert answer == "http/1.1"
    assert sessions.get("localhost", _port(server)) is not None


def test_an_http1_1_run_probes_first_for_the_session(
    run_mode: RunFn, mode: str, tls_one_a_connection: KeptAlive
) -> None:
    # Connection 1 is the probe: a full handshake, no request; the run's
    # three connections come after it (and resume its session but where the
    # ticket was late). A process pool has no probe: its workers could not
    # use the parent's session.
    server = tls_one_a_connection
    tracker = run_mode(
        ["BR", "CN", "IN"], base_url=server.url, concurrency=3, http2=False
    )
    assert tracker.counter[DownloadStatus.OK] == 3
    probe = 0 if mode == "processpool" else 1
    assert server.connections == 3 + probe
    assert server.resumed[1] is False
    numbers = sorted(number for number, _ in server.requests)
    assert numbers == [1 + probe, 2 + probe, 3 + probe]
