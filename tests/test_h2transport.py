"""flags2.h2transport: blocking clients' HTTP/2 on a private loop, closed safely."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import httpx2 as httpx
import pytest

from flags2.clientplan import STREAMS_PER_CONNECTION
from flags2.clients import ClientPool
from flags2.h2transport import HTTP2Transport
from flags2.settings import Settings
from tests.h2server import H2Server
from tests.helpers import TLSServer, flag_bytes


def test_closing_with_a_request_in_flight_ends_its_wait(silent_tls_port: int) -> None:
    # A run that stops early closes its clients while threads still wait on
    # the private loop: each must get an error at once, never wait forever
    # (the interpreter's exit joins every thread of a pool).
    transport = HTTP2Transport()
    request = httpx.Request(
        "GET", f"https://127.0.0.1:{silent_tls_port}/flags/br/br.gif"
    )
    outcome: list[BaseException] = []

    def fetch() -> None:
        try:
            transport.handle_request(request)
        except BaseException as exc:  # the test reads what it was
            outcome.append(exc)

    waiter = threading.Thread(target=fetch, daemon=True)
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive()  # in flight: the server never answers
    transport.close()
    waiter.join(5)
    assert not waiter.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.ReadError)
    with pytest.raises(httpx.ConnectError, match="closed"):
        transport.handle_request(request)  # nothing starts after the close


def test_a_blocking_run_s_clients_share_one_loop_thread(
    trusted: str, tls_server: TLSServer
) -> None:
    # Each client holds at most STREAMS_PER_CONNECTION slots; their HTTP/2
    # work is all on one private loop, not one loop thread per client.
    settings = Settings(
        base_url=f"{tls_server.url}/flags", concurrency=2 * STREAMS_PER_CONNECTION
    )
    with ClientPool(settings) as pool, contextlib.ExitStack() as leases:
        clients = {
            leases.enter_context(pool.lease())
            for _ in range(2 * STREAMS_PER_CONNECTION)
        }
        assert len(clients) == 2
        for client in clients:
            assert client.get(f"{tls_server.url}/flags/br/br.gif").status_code == 200
        loops = [t for t in threading.enumerate() if t.name == "flags2-http2"]
        assert len(loops) == 1
    assert not any(t.name == "flags2-http2" for t in threading.enumerate())


def _fetch_all(
    send: Callable[[httpx.Request], httpx.Response], requests: list[httpx.Request]
) -> list[httpx.Response | BaseException]:
    """Each request sent from a thread of its own, all at once, as a pool's."""
    outcomes: list[httpx.Response | BaseException] = [
        RuntimeError("no answer") for _ in requests
    ]
    start = threading.Barrier(len(requests))

    def fetch(i: int) -> None:
        start.wait()
        try:
            outcomes[i] = send(requests[i])
        except BaseException as exc:  # the test reads what it was
            outcomes[i] = exc

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return outcomes


def test_a_burst_of_threads_shares_one_connection_each_its_own_flag(
    trusted: str, test_ca: tuple[str, str]
) -> None:
    # The burst comes before the connection is made: every request waits for
    # that one connection, then goes on it as a stream, and each thread gets
    # the answer to its own request.
    codes = ["BR", "CN", "DE", "IN", "US", "JP", "FR", "NG", "RU", "ID"] * 3
    with H2Server(test_ca[1], lambda *_: "ok") as server:
        transport = HTTP2Transport()
        try:
            requests = [
                httpx.Request(
                    "GET", f"{server.url}/flags/{cc.lower()}/{cc.lower()}.gif"
                )
                for cc in codes
            ]
            outcomes = _fetch_all(transport.handle_request, requests)
        finally:
            transport.close()
    for cc, outcome in zip(codes, outcomes, strict=True):
        assert isinstance(outcome, httpx.Response), outcome
        assert outcome.read() == flag_bytes(cc)
        assert outcome.extensions["http_version"] == b"HTTP/2"
    assert server.connections == 1


def test_a_connection_s_end_is_each_thread_s_own_error(
    trusted: str, test_ca: tuple[str, str]
) -> None:
    # Ten streams in flight when the connection drops: each thread raises an
    # error of its own, naming its own request (httpx sets it on the error).
    def answer(conn: int, stream: int, path: str) -> str:
        return "drop" if stream == 10 else "silent"

    with H2Server(test_ca[1], answer) as server:
        transport = HTTP2Transport()
        try:
            requests = [
                httpx.Request("GET", f"{server.url}/flags/x{i}/x{i}.gif")
                for i in range(10)
            ]
            with httpx.Client(transport=transport) as client:
                outcomes = _fetch_all(client.send, requests)
        finally:
            transport.close()
    assert all(isinstance(o, httpx.RemoteProtocolError) for o in outcomes), outcomes
    assert len({id(o) for o in outcomes}) == 10
    for request, outcome in zip(requests, outcomes, strict=True):
        assert isinstance(outcome, httpx.RemoteProtocolError)
        assert outcome.request is request


def test_a_server_that_goes_away_at_once_every_time_is_an_error_not_a_loop(
    trusted: str, test_ca: tuple[str, str]
) -> None:
    # Each connection says GOAWAY before its first stream (last stream 0):
    # the request was never seen, and goes again on a new connection, three
    # connections in all, then fails.
    with H2Server(test_ca[1], lambda *_: "goaway") as server:
        transport = HTTP2Transport()
        try:
            request = httpx.Request("GET", f"{server.url}/flags/br/br.gif")
            with pytest.raises(httpx.RemoteProtocolError, match="3 connections"):
                transport.handle_request(request)
        finally:
            transport.close()
    assert server.connections == 3
