"""What each server answers over HTTP: files, listings, errors, delays, /_stats."""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from functools import partial
from pathlib import Path

import httpx2 as httpx
import pytest

from flags2.servers.handler import _no_link_below
from flags2.servers.options import data_dir
from flags2.servers.testing import ServerFactory, raw_request, read_response
from tests.helpers import noise


def test_local_serves_the_shipped_files(start_server: ServerFactory) -> None:
    server = start_server("local")
    with httpx.Client(base_url=server.base_url) as client:
        gif = client.get("/br/br.gif")
        meta = client.get("/br/metadata.json")
    assert gif.status_code == 200
    assert gif.headers["content-type"] == "image/gif"
    assert gif.content == (data_dir() / "flags/br/br.gif").read_bytes()
    assert int(gif.headers["content-length"]) == len(gif.content)
    assert meta.json()["country"] == "Brazil"


def test_listings_redirects_and_404s(start_server: ServerFactory) -> None:
    server = start_server("local")
    with httpx.Client(base_url=server.root_url) as client:
        listing = client.get("/flags/")
        redirect = client.get("/flags")
        missing = client.get("/flags/zz/zz.gif")
    assert listing.status_code == 200
    assert 'href="br/"' in listing.text and listing.text.count("<li>") == 194
    assert redirect.status_code == 301 and redirect.headers["location"] == "/flags/"
    assert missing.status_code == 404
    for response in (listing, redirect, missing):
        assert int(response.headers["content-length"]) == len(response.content)


def test_keep_alive_two_requests_one_connection(start_server: ServerFactory) -> None:
    server = start_server("local")
    with httpx.Client(base_url=server.root_url) as client:
        assert client.get("/flags/br/br.gif").status_code == 200
        assert client.get("/flags/zz/zz.gif").status_code == 404  # errors keep it too
        assert client.get("/flags/cn/cn.gif").status_code == 200
        stats = client.get("/_stats").json()
    assert stats["connections"] == 1
    assert stats["requests"] == {"200": 2, "404": 1}


def test_keep_alive_on_a_raw_socket(start_server: ServerFactory) -> None:
    server = start_server("local")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        reader = sock.makefile("rb")
        for target in ("/flags/br/br.gif", "/flags/zz/", "/flags/br/metadata.json"):
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            response = read_response(reader)
            assert "close" not in response.headers.get("connection", "")
        reader.close()
    assert server.stats.snapshot()["connections"] == 1


def test_idle_connection_is_closed_after_the_timeout(
    start_server: ServerFactory,
) -> None:
    server = start_server("local", idle_timeout=0.2)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""  # orderly close, no request ever sent
        assert 0.15 < time.monotonic() - started < 3


def test_head_is_not_delayed_and_has_no_body(start_server: ServerFactory) -> None:
    server = start_server("delay", min_delay=1.0, max_delay=1.0)
    with httpx.Client(base_url=server.base_url) as client:
        started = time.monotonic()
        head = client.head("/br/br.gif")
        head_time = time.monotonic() - started
        started = time.monotonic()
        get = client.get("/br/br.gif")
        get_time = time.monotonic() - started
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(get.content))
    assert head_time < 0.8 < 1.0 <= get_time


def test_delay_applies_to_404s_and_listings(start_server: ServerFactory) -> None:
    server = start_server("delay", min_delay=0.3, max_delay=0.3)
    with httpx.Client(base_url=server.base_url) as client:
        for target in ("/zz/zz.gif", "/"):
            started = time.monotonic()
            client.get(target)
            assert time.monotonic() - started >= 0.3


def test_local_does_not_delay(start_server: ServerFactory) -> None:
    server = start_server("local", min_delay=2, max_delay=2)
    with httpx.Client(base_url=server.base_url) as client:
        started = time.monotonic()
        for _ in range(3):
            client.get("/br/br.gif")
        assert time.monotonic() - started < 1.5  # one delay would be 2 s


def test_stats_counts_requests_and_is_not_counted(start_server: ServerFactory) -> None:
    server = start_server("error", seed=42, error_rate=0.5)
    with httpx.Client(base_url=server.root_url) as client:
        statuses = [
            client.get(f"/flags/{cc}/{cc}.gif").status_code
            for cc in ("br", "cn", "zz") * 4
        ]
        client.head("/flags/br/br.gif")
        first = client.get("/_stats")
        second = client.get("/_stats").json()
    assert first.headers["content-type"] == "application/json"
    stats = first.json()
    expected = {str(s): statuses.count(s) for s in set(statuses)}
    expected["200"] = expected.get("200", 0) + 1  # the HEAD
    assert stats["requests"] == expected
    assert stats["faults"] == {"teapot": statuses.count(418)}
    assert 0 < statuses.count(418) < 12  # error rate 0.5 with seed 42
    assert stats["seed"] == 42 and stats["server"] == "error"
    assert second["requests"] == stats["requests"]  # /_stats is not counted


def test_stats_peak_in_flight(start_server: ServerFactory) -> None:
    server = start_server("delay", min_delay=0.5, max_delay=0.5)
    sockets = [
        socket.create_connection(("127.0.0.1", server.port), timeout=5)
        for _ in range(20)
    ]
    try:
        for sock in sockets:
            sock.sendall(b"GET /flags/br/br.gif HTTP/1.1\r\nHost: t\r\n\r\n")
        # /_stats is answered at once, not delayed. Its connection's thread may
        # get there before the others have read their requests (a loaded
        # machine): ask again until one is in flight, for at most 5 s.
        deadline = time.monotonic() + 5
        while (during := json.loads(raw_request(server.port, "/_stats").body))[
            "in_flight"
        ] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        statuses = [read_response(sock.makefile("rb")).status for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    # A handler leaves "in flight" just after its answer is sent: ask until the
    # last one has (bounded), rather than racing it.
    deadline = time.monotonic() + 5
    while (after := json.loads(raw_request(server.port, "/_stats").body))[
        "in_flight"
    ] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert statuses == [200] * 20
    assert during["in_flight"] > 0  # seen while the delays ran
    assert after["peak_in_flight"] == 20
    assert after["in_flight"] == 0


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_are_refused(start_server: ServerFactory, method: str) -> None:
    server = start_server("local")
    response = raw_request(server.port, "/flags/br/br.gif", method)
    assert response.status == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert int(response.headers["content-length"]) == len(response.body)


def test_unknown_method_is_501(start_server: ServerFactory) -> None:
    server = start_server("local")
    assert raw_request(server.port, "/", "BREW").status == 501


@pytest.mark.parametrize(
    "target",
    [
        "/../pyproject.toml",
        "/flags/../../pyproject.toml",
        "/%2e%2e/%2e%2e/pyproject.toml",
        "/flags/%2E%2E/%2E%2E/etc/passwd",
        "/..%2f..%2fetc/passwd",
        "/flags/..",
        "/../",
        "/flags/br/br.gif%00.txt",
    ],
)
def test_traversal_is_404(start_server: ServerFactory, target: str) -> None:
    server = start_server("local")
    response = raw_request(server.port, target)
    assert response.status == 404
    assert b"root:" not in response.body


def test_symlinks_cannot_leave_the_served_folder(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    (root / "flags").mkdir(parents=True)
    (root / "inside.txt").write_text("inside")
    (tmp_path / "secret.txt").write_text("secret")
    (root / "escape.txt").symlink_to(tmp_path / "secret.txt")
    (root / "outdir").symlink_to(tmp_path)
    (root / "alias.txt").symlink_to(root / "inside.txt")
    server = start_server("local", directory=root)
    assert raw_request(server.port, "/escape.txt").status == 404
    assert raw_request(server.port, "/outdir/secret.txt").status == 404
    assert raw_request(server.port, "/outdir/").status == 404
    alias = raw_request(server.port, "/alias.txt")  # a link inside the root is fine
    assert (alias.status, alias.body) == (200, b"inside")


def test_client_hanging_up_causes_no_traceback(
    start_server: ServerFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    server = start_server("delay", min_delay=0.2, max_delay=0.2)
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /flags/br/br.gif HTTP/1.1\r\nHost: t\r\n\r\n")
            # Abort with RST before the delay ends: the server's write then fails.
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
    time.sleep(0.5)
    assert raw_request(server.port, "/flags/br/br.gif").status == 200
    # Not even one line: no traceback, and no "error serving ..." either.
    err = capfd.readouterr().err
    assert noise(err) == [], err


@pytest.mark.parametrize("joined", [False, True])
def test_server_close_joins_handlers_only_when_asked(joined: bool) -> None:
    # Handler threads are started without threading.Thread for speed; a server
    # embedded with block_on_close still gets threads server_close() waits for.
    from flags2.servers.options import ServerOptions
    from flags2.servers.server import FlagServer, serve_in_thread

    options = ServerOptions(seed=1, min_delay=0.5, max_delay=0.5)
    server = FlagServer("delay", options, port=0)
    server.block_on_close = joined
    server.daemon_threads = not joined
    serve_in_thread(server)

    def in_flight() -> int:
        value = server.stats.snapshot()["in_flight"]
        assert isinstance(value, int)
        return value

    with socket.create_connection(("127.0.0.1", server.port)) as conn:
        conn.sendall(
            b"GET /flags/br/br.gif HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        deadline = time.monotonic() + 5
        while in_flight() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.shutdown()
        started = time.perf_counter()
        server.server_close()
        waited = time.perf_counter() - started
    assert (waited > 0.2) is joined, waited


def test_a_path_without_links_below_the_root_is_inside_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "flags" / "br").mkdir(parents=True)
    (root / "flags" / "br" / "br.gif").write_bytes(b"GIF89a")
    (root / "up").symlink_to(tmp_path)
    (root / "flags" / "same").symlink_to(root / "flags" / "br")
    real = os.path.realpath(root)
    inside = partial(_no_link_below, real)
    assert inside(os.path.join(real, "flags", "br", "br.gif"))
    assert inside(os.path.join(real, "flags", "br") + os.sep)  # a listing
    # Nothing exists from there on: no link can lead out, as realpath says.
    assert inside(os.path.join(real, "flags", "zz", "zz.gif"))
    assert inside(os.path.join(real, "flags", "br", "br.gif", "x"))
    # A link anywhere below the root, even one that stays inside: ask realpath.
    assert not inside(os.path.join(real, "up", "secret.txt"))
    assert not inside(os.path.join(real, "flags", "same", "br.gif"))
    assert not inside(str(tmp_path / "elsewhere.txt"))
    assert not inside(real + "x/flags")  # a sibling that shares the prefix
