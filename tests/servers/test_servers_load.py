"""A thousand simultaneous connections are all served: none reset, none lost."""

from __future__ import annotations

import json
import resource
import socket

from flags2.servers.options import data_dir
from flags2.servers.testing import ServerFactory, raw_request, read_response

CONNECTIONS = 1000


def test_thousand_concurrent_connections(start_server: ServerFactory) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 3 * CONNECTIONS  # both ends of each connection live in this process
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    # The delay keeps requests in flight together while the others connect: the
    # backlog and the thread-per-connection model are under test, not the delay.
    # It is long enough that a busy CI machine still overlaps most of them.
    server = start_server("delay", min_delay=1.0, max_delay=1.0)
    request = b"GET /flags/br/br.gif HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    sockets: list[socket.socket] = []
    try:
        for _ in range(CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(request)
            sockets.append(sock)
        statuses = []
        for sock in sockets:
            with sock.makefile("rb") as reader:
                response = read_response(reader)
            statuses.append((response.status, len(response.body)))
    finally:
        for sock in sockets:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    size = len((data_dir() / "flags/br/br.gif").read_bytes())
    assert statuses == [(200, size)] * CONNECTIONS
    stats = json.loads(raw_request(server.port, "/_stats").body)
    assert stats["requests"] == {"200": CONNECTIONS}
    assert stats["connections"] == CONNECTIONS + 1  # + the /_stats request
    assert stats["peak_in_flight"] > CONNECTIONS // 4
