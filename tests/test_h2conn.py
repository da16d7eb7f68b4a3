"""flags2.h2conn: streams over one HTTP/2 connection, against a raw h2 server
that sends on cue what good servers send rarely (GOAWAY, resets, silence)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from flags2.codes import all_country_codes
from flags2.h2conn import request_headers
from flags2.processes import START_METHOD_ENV
from tests.h2server import Answer, H2Server
from tests.helpers import MODES, flag_bytes, leftovers, recorded_run

CODES = ["BR", "CN", "DE", "IN", "US"]


@pytest.fixture(autouse=True)
def _clean_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Process-pool workers from a fresh forkserver, not forks of this process.

    Nothing is planted in-process here (the server is real, on loopback), and
    a fork of a process whose server threads hold locks may inherit them
    locked: a worker stuck for good, which the suite's default fork risks.
    """
    monkeypatch.setenv(START_METHOD_ENV, "forkserver")


def _run(
    mode: str, server: H2Server, dest: Path, tmp_path: Path, **fields: Any
) -> tuple[int, dict[str, Any]]:
    codes = fields.pop("codes", CODES)
    fields.setdefault("concurrency", 30)
    return recorded_run(
        mode, f"{server.url}/flags", dest, tmp_path / "run.json", codes, **fields
    )


def _errors(record: dict[str, Any]) -> dict[str, str]:
    return {f["cc"]: f["error"] for f in record["flags"] if f["error"]}


def _only(cc: str, fate: str) -> Answer:
    """A server answer: `fate` for the flag of `cc`, every other stream served."""
    part = f"/{cc.lower()}/"
    return lambda conn, stream, path: fate if part in path else "ok"


def _saved(dest: Path) -> set[str]:
    return {p.stem.upper() for p in dest.glob("*.gif")}


def test_the_headers_are_http2_s_lowercase_without_connection_fields() -> None:
    request = httpx.Request(
        "GET",
        "https://Example.org:8443/flags/br/br.gif?x=1",
        headers={"User-Agent": "flags2", "Connection": "keep-alive", "TE": "gzip"},
    )
    headers = request_headers(request)
    assert headers[:4] == [
        (b":method", b"GET"),
        (b":authority", b"example.org:8443"),
        (b":scheme", b"https"),
        (b":path", b"/flags/br/br.gif?x=1"),
    ]
    names = [name for name, _ in headers[4:]]
    assert b"user-agent" in names
    assert all(name == name.lower() for name in names)
    assert not {b"host", b"connection", b"te"} & set(names)


@pytest.mark.parametrize("fate", ["goaway", "goaway-early"])
@pytest.mark.parametrize("mode", MODES)
def test_a_goaway_halfway_sends_the_unanswered_streams_again_on_a_new_connection(
    mode: str, fate: str, trusted: str, test_ca: tuple[str, str], dest: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    # Every connection serves 5 streams, then says GOAWAY. The streams after
    # its last id were never seen: they go again. The first two connections
    # (the probe's may be one) can say it ahead of the answers, in the same
    # write: h2 reads nothing after a GOAWAY, so those go again too.
    def answer(conn: int, stream: int, path: str) -> str:
        if stream <= 5:
            return "ok"
        return fate if conn < 2 else "goaway"

    codes = list(all_country_codes())
    with H2Server(test_ca[1], answer) as server:
        code, record = _run(mode, server, dest, tmp_path, codes=codes)
    assert code == 0, list(_errors(record).items())[:3]
    assert record["counts"]["OK"] == 194
    assert _saved(dest) == {f["cc"] for f in record["flags"] if f["status"] == "OK"}
    assert server.connections >= 194 // 5
    assert fate in server.fates


@pytest.mark.parametrize("mode", MODES)
def test_a_refused_stream_goes_again(
    mode: str, trusted: str, test_ca: tuple[str, str], dest: Path, tmp_path: Path
) -> None:
    # The first two streams are refused; they go again and are served.
    refused: list[str] = []

    def answer(conn: int, stream: int, path: str) -> str:
        if len(refused) < 2:
            refused.append(path)
            return "refuse"
        return "ok"

    with H2Server(test_ca[1], answer) as server:
        code, record = _run(mode, server, dest, tmp_path, concurrency=1)
    assert code == 0, _errors(record)
    assert _saved(dest) == set(CODES)
    assert "refuse" in server.fates


@pytest.mark.parametrize("mode", MODES)
def test_a_server_that_refuses_every_time_is_an_error_not_a_loop(
    mode: str, trusted: str, test_ca: tuple[str, str], dest: Path, tmp_path: Path
) -> None:
    with H2Server(test_ca[1], lambda conn, stream, path: "refuse") as server:
        code, record = _run(mode, server, dest, tmp_path, codes=["BR"], retries=0)
    assert code == 1
    assert "refused this request 3 times" in _errors(record)["BR"]
    assert not _saved(dest) and not leftovers(dest)


@pytest.mark.parametrize("mode", MODES)
def test_a_path_refused_every_time_is_its_error_and_the_run_ends(
    mode: str, trusted: str, test_ca: tuple[str, str], dest: Path, tmp_path: Path
) -> None:
    # The connection answers the others, so it is making progress: the bound
    # is on the refusals of one request, not on fruitless connections.
    with H2Server(test_ca[1], _only("CN", "refuse")) as server:
        code, record = _run(mode, server, dest, tmp_path, concurrency=1, retries=0)
    assert code == 1
    errors = _errors(record)
    assert list(errors) == ["CN"] and "refused this request 3 times" in errors["CN"]
    assert server.fates.count("refuse") == 3
    assert _saved(dest) == set(CODES) - {"CN"}


def test_a_stream_slot_passed_to_a_cancelled_waiter_goes_on_to_the_next(
    trusted: str, test_ca: tuple[str, str]
) -> None:
    import asyncio

    from flags2.h2transport import HTTP2Transport

    # A cap of 1: A is in flight, B and C wait. A's end wakes B, which is
    # cancelled before it runs (from A's response hook): C must get the slot.
    tasks: dict[str, asyncio.Task[httpx.Response]] = {}

    async def hook(response: httpx.Response) -> None:
        if response.request.url.path.endswith("/a") and "b" in tasks:
            tasks["b"].cancel()

    async def main(url: str) -> int:
        transport = HTTP2Transport(verify=httpx.create_ssl_context())
        hooks = {"response": [hook]}
        async with httpx.AsyncClient(transport=transport, event_hooks=hooks) as c:
            await c.get(f"{url}/warm")  # the connection made, its cap known
            for name in "abc":
                tasks[name] = asyncio.create_task(c.get(f"{url}/{name}"))
                await asyncio.sleep(0)
            answer = await asyncio.wait_for(tasks["c"], 5)
            return answer.status_code

    with H2Server(test_ca[1], lambda *_: "ok", max_streams=1) as server:
        assert asyncio.run(main(server.url)) == 404
    assert tasks["b"].cancelled()


def test_a_client_closed_while_its_connection_is_made_keeps_none_open(
    trusted: str, test_ca: tuple[str, str]
) -> None:
    import asyncio

    from flags2.h2transport import HTTP2Transport

    with H2Server(test_ca[1], lambda *_: "ok", handshake_delay=0.5) as server:
        transport = HTTP2Transport(verify=httpx.create_ssl_context())

        async def main() -> None:
            client = httpx.AsyncClient(transport=transport)
            request = asyncio.create_task(client.get(f"{server.url}/flags/br/br.gif"))
            await asyncio.sleep(0.1)  # its TLS handshake is under way
            await client.aclose()
            with pytest.raises(httpx.ConnectError, match="closed"):
                await request
            await asyncio.sleep(0.5)  # a handshake left running would end now

        asyncio.run(main())
        assert server.connections == 1
        deadline = time.monotonic() + 5
        while server.open and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.open == 0


@pytest.mark.parametrize("mode", MODES)
def test_a_reset_stream_is_that_flag_s_error_alone(
    mode: str, trusted: str, test_ca: tuple[str, str], dest: Path, tmp_path: Path
) -> None:
    with H2Server(test_ca[1], _only("CN", "reset")) as server:
        code, record = _run(mode, server, dest, tmp_path, retries=0)
    assert code == 1
    errors = _errors(record)
    assert list(errors) == ["CN"] and "stream reset" in errors["CN"]
    assert _saved(dest) == set(CODES) - {"CN"}
    assert not leftovers(dest)


@pytest.mark.parametrize("mode", MODES)
def test_a_silent_stream_times_out_and_the_others_are_served(
    mode: str, trusted: str, test_ca: tuple[str, str], dest: Path, tmp_path: Path
) -> None:
    with H2Server(test_ca[1], _only("IN", "silent")) as server:
        code, record = _run(mode, server, dest, tmp_path, timeout=0.5, retries=0)
    assert code == 1
    errors = _errors(record)
    assert list(errors) == ["IN"], errors
    assert _saved(dest) == set(CODES) - {"IN"}
    assert (dest / "BR.gif").read_bytes() == flag_bytes("BR")


@pytest.mark.parametrize("mode", MODES)
def test_a_connection_dropped_with_streams_in_flight_leaves_no_partial_file(
    mode: str, trusted: str, test_ca: tuple[str, str], dest: Path, tmp_path: Path
) -> None:
    # The connection of the second stream drops; the retries of what was in
    # flight then go on a new one.
    seen: list[str] = []
    dropped: list[int] = []

    def answer(conn: int, stream: int, path: str) -> str:
        seen.append(path)
        if len(seen) == 2:
            dropped.append(conn)
            return "drop"
        return "ok"

    with H2Server(test_ca[1], answer) as server:
        code, record = _run(mode, server, dest, tmp_path, retries=2)
    assert code == 0, _errors(record)
    assert _saved(dest) == set(CODES)
    assert not leftovers(dest)
    assert dropped and server.connections > dropped[0] + 1


def test_a_server_that_will_not_speak_http2_is_a_connect_error(
    trusted: str, test_ca: tuple[str, str]
) -> None:
    import ssl

    from flags2.h2transport import HTTP2Transport

    # A TLS server that takes only http/1.1 by ALPN, for a plan made for h2.
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(test_ca[1])
    context.set_alpn_protocols(["http/1.1"])
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        raw, _ = listener.accept()
        try:
            with context.wrap_socket(raw, server_side=True) as sock:
                sock.recv(1024)
        except (OSError, ssl.SSLError):
            pass

    threading.Thread(target=serve, daemon=True).start()
    transport = HTTP2Transport(verify=httpx.create_ssl_context())
    try:
        with (
            httpx.Client(transport=transport) as client,
            pytest.raises(httpx.ConnectError, match="did not agree to HTTP/2"),
        ):
            client.get(f"https://localhost:{port}/flags/br/br.gif")
    finally:
        listener.close()
