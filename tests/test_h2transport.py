"""flags2.h2transport: blocking clients' HTTP/2 on a private loop, closed safely."""

from __future__ import annotations

import contextlib
import threading

import httpx2 as httpx
import pytest

from flags2.clientplan import STREAMS_PER_CONNECTION
from flags2.clients import ClientPool
from flags2.h2transport import HTTP2Transport
from flags2.settings import Settings
from tests.helpers import TLSServer


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
