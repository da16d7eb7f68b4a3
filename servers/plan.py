"""The seeded plan: how long each request waits and which fault it gets.

A pure function of (seed, server kind, path, how many times that path was asked
for before), so a run replays exactly, whatever order requests arrive in, and a
benchmark can compute in-process what the server will do (the server counts
paths other than flags and metadata in shared buckets: see
`flags2.servers.server.FlagServer.next_nth`)::

    >>> from flags2.servers.options import ServerOptions
    >>> from flags2.servers.plan import planned
    >>> opts = ServerOptions(seed=7, error_rate=0.5)
    >>> [planned(7, "error", "/flags/br/br.gif", nth, opts) for nth in range(3)]
    [Planned(delay=3.39029117612049, fault=None),
     Planned(delay=4.390283301815622, fault=None),
     Planned(delay=0.611330701927258, fault='teapot')]

DELAY and ERROR share the same delays for the same seed (ERROR is DELAY plus
faults); LOCAL never waits and never fails. The module never touches the global
`random`, whose state any library in the process could disturb.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from .options import SERVER_KINDS, ServerOptions

__all__ = ["Planned", "new_seed", "planned"]

# Bump if the derivation ever changes: old seeds would replay differently.
_PERSON = b"flags2-plan-v1"
_SCALE = float(2**64)


@dataclass(frozen=True, slots=True)
class Planned:
    """What the server does with one GET request."""

    delay: float
    """Seconds to wait before answering (or before injecting the fault)."""
    fault: str | None
    """Fault kind injected instead of the normal answer, or `None`."""


def new_seed() -> int:
    """Pick a fresh seed, short enough to retype from the server's banner."""
    return secrets.randbelow(1_000_000)


def _uniforms(seed: int, path: str, nth: int) -> tuple[float, float, float]:
    # The kind is deliberately not hashed: DELAY and ERROR then wait the same
    # delays, and `slow` matches `cli` whatever its error rate.
    key = f"{seed}\0{path}\0{nth}".encode("utf-8", "surrogateescape")
    digest = hashlib.blake2b(key, digest_size=24, person=_PERSON).digest()
    chunks = (digest[i : i + 8] for i in range(0, 24, 8))
    u_delay, u_fault, u_kind = (int.from_bytes(c, "big") / _SCALE for c in chunks)
    return u_delay, u_fault, u_kind


def _pick(faults: tuple[tuple[str, float], ...], u: float) -> str:
    total = sum(weight for _, weight in faults)
    target = u * total
    for kind, weight in faults:
        target -= weight
        if target < 0:
            return kind
    return faults[-1][0]  # float rounding can leave a sliver past the last weight


def planned(
    seed: int, kind: str, path: str, nth: int, options: ServerOptions
) -> Planned:
    """Return the plan for the `nth` (0-based) GET of `path` on a `kind` server.

    `path` is the request target's path as sent, without the query string
    (e.g. ``/flags/br/br.gif``). Only `min_delay`, `max_delay`, `error_rate`
    and `faults` of `options` matter.
    """
    if kind not in SERVER_KINDS:
        raise ValueError(f"unknown server kind {kind!r}")
    if nth < 0:
        raise ValueError(f"nth must be >= 0, got {nth}")
    if kind == "local":
        return Planned(0.0, None)
    u_delay, u_fault, u_kind = _uniforms(seed, path, nth)
    delay = options.min_delay + u_delay * (options.max_delay - options.min_delay)
    fault = None
    if kind == "error" and u_fault < options.error_rate:
        fault = _pick(options.faults, u_kind)
    return Planned(delay, fault)
