"""HTTP clients sized to the run, lent out one connection slot at a time.

One run shares its clients among all its requests. A single httpx client with
a pool of 1000 connections spends more time scanning its pool than waiting on
the network (its cost per request grows with the pool), so the run's slots are
split over several clients of at most ``CONNECTIONS_PER_CLIENT`` connections.
A *lease* is one slot of one client: there are exactly as many leases as
concurrent requests, so no request ever waits for a pool slot, and the lease
queue is also the book's semaphore::

    with ClientPool(settings) as pool:
        with pool.lease() as client:
            client.get(url)
"""

from __future__ import annotations

import asyncio
import queue
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import TracebackType

import httpx2 as httpx

from flags2.settings import Settings

__all__ = ["CONNECTIONS_PER_CLIENT", "AsyncClientPool", "ClientPool", "split_slots"]

CONNECTIONS_PER_CLIENT = 32


def split_slots(
    concurrency: int, per_client: int = CONNECTIONS_PER_CLIENT
) -> list[int]:
    """Pool sizes, as even as possible, that add up to `concurrency`."""
    n_clients = max(1, -(-concurrency // per_client))
    size, extra = divmod(concurrency, n_clients)
    return [size + (i < extra) for i in range(n_clients)]


def _ssl_context(base_url: str) -> ssl.SSLContext:
    if base_url.lower().startswith("https:"):
        return httpx.create_ssl_context()
    # Loading the CA store costs ~35 ms per client, and a plain-http server needs
    # none. This context still verifies, so a redirect to https fails, safely.
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _limits(size: int) -> httpx.Limits:
    return httpx.Limits(max_connections=size, max_keepalive_connections=size)


def _timeout(settings: Settings) -> httpx.Timeout:
    # Leases guarantee a free slot, so a wait for one would be a bug: no limit.
    return httpx.Timeout(settings.timeout, pool=None)


class ClientPool:
    """Blocking clients for the sequential and thread-pool modes."""

    def __init__(self, settings: Settings) -> None:
        ctx = _ssl_context(settings.base_url)
        self._leases: queue.SimpleQueue[httpx.Client] = queue.SimpleQueue()
        self._clients: list[httpx.Client] = []
        for size in split_slots(settings.concurrency):
            client = httpx.Client(
                verify=ctx,
                limits=_limits(size),
                timeout=_timeout(settings),
                follow_redirects=True,
            )
            self._clients.append(client)
            for _ in range(size):
                self._leases.put(client)

    @contextmanager
    def lease(self) -> Iterator[httpx.Client]:
        client = self._leases.get()
        try:
            yield client
        finally:
            self._leases.put(client)

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for client in self._clients:
            client.close()


class AsyncClientPool:
    """Async clients for the asyncio mode; create it inside the event loop."""

    def __init__(self, settings: Settings) -> None:
        ctx = _ssl_context(settings.base_url)
        self._leases: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        self._clients: list[httpx.AsyncClient] = []
        for size in split_slots(settings.concurrency):
            client = httpx.AsyncClient(
                verify=ctx,
                limits=_limits(size),
                timeout=_timeout(settings),
                follow_redirects=True,
            )
            self._clients.append(client)
            for _ in range(size):
                self._leases.put_nowait(client)

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[httpx.AsyncClient]:
        client = await self._leases.get()
        try:
            yield client
        finally:
            self._leases.put_nowait(client)

    async def __aenter__(self) -> AsyncClientPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for client in self._clients:
            await client.aclose()
