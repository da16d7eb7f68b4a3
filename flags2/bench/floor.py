"""The httpx2 API floor: the CPU per request no httpx2-based downloader avoids.

httpx2's own ``Client.get`` (and ``AsyncClient.get`` in one event loop) on an
``httpx.MockTransport`` that answers every request with a flag-sized GIF: no
socket, no parsing, no file, only the client's request and response objects,
its hooks, headers and body handling. The bench measures it in a child process
of its own (so its imports neither count nor linger in the bench), and times
the process's CPU around the request loop only, after a warm-up::

    $ python -m flags2.bench.floor 300
    {"requests": 300, "body_bytes": 9917, "client": 0.00021, "async_client": 0.00031}

The figures are CPU seconds per request; flags2's own "CPU ms/req" in the
table sits above them by what its transport, saving and bookkeeping cost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_REQUESTS", "ApiFloor", "measure", "measure_in_child"]

DEFAULT_REQUESTS = 300
"""Enough for a steady per-request figure, a fraction of a second of CPU."""
_WARM_UP = 30  # requests before timing: first-call imports and caches
_URL = "http://flags.test/flags/br/br.gif"
_CHILD_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class ApiFloor:
    """httpx2's own CPU seconds per request, blocking and async."""

    requests: int
    body_bytes: int
    client: float
    async_client: float | None = None

    def as_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _flag_body() -> bytes:
    """The median-sized bundled flag: what a typical answer carries."""
    from flags2.servers.options import data_dir

    files = sorted(data_dir().glob("flags/*/*.gif"), key=lambda p: p.stat().st_size)
    return files[len(files) // 2].read_bytes()


def _handler(body: bytes) -> Any:
    import httpx2 as httpx

    headers = {"Content-Type": "image/gif", "Content-Length": str(len(body))}

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=headers, content=body)

    return answer


def _blocking(requests: int, body: bytes) -> float:
    import httpx2 as httpx

    with httpx.Client(transport=httpx.MockTransport(_handler(body))) as client:
        for _ in range(_WARM_UP):
            client.get(_URL).raise_for_status()
        start = time.process_time()
        for _ in range(requests):
            client.get(_URL).raise_for_status()
        return (time.process_time() - start) / requests


async def _async(requests: int, body: bytes) -> float:
    import httpx2 as httpx

    transport = httpx.MockTransport(_handler(body))
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(_WARM_UP):
            (await client.get(_URL)).raise_for_status()
        start = time.process_time()
        for _ in range(requests):
            (await client.get(_URL)).raise_for_status()
        return (time.process_time() - start) / requests


def measure(requests: int = DEFAULT_REQUESTS) -> ApiFloor:
    """Measure in this process: each figure the median of three loops."""
    body = _flag_body()
    client = statistics.median(_blocking(requests, body) for _ in range(3))
    async_client = statistics.median(
        asyncio.run(_async(requests, body)) for _ in range(3)
    )
    return ApiFloor(requests, len(body), client, async_client)


def measure_in_child(
    env: Mapping[str, str], requests: int = DEFAULT_REQUESTS
) -> ApiFloor | None:
    """`measure` in a fresh interpreter; None if it could not run."""
    command = [sys.executable, "-P", "-m", "flags2.bench.floor", str(requests)]
    try:
        done = subprocess.run(
            command,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=_CHILD_TIMEOUT,
            check=True,
        )
        return ApiFloor(**json.loads(done.stdout))
    except (OSError, subprocess.SubprocessError, ValueError, TypeError):
        return None  # no reference line rather than a failed bench


def _main(argv: list[str]) -> int:
    requests = int(argv[0]) if argv else DEFAULT_REQUESTS
    print(json.dumps(measure(requests).as_record()))
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a child
    sys.exit(_main(sys.argv[1:]))
