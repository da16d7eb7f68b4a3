"""Settings shared by every bundled server: one frozen `ServerOptions`.

The three servers differ only by *kind* (``local``, ``delay``, ``error``); all the
knobs live in one immutable value that the command lines build, the handler reads
and the benchmark can pass to `flags2.servers.plan.planned` to replay a run::

    >>> from flags2.servers.options import ServerOptions, parse_faults
    >>> opts = ServerOptions(seed=7, max_delay=2, faults=parse_faults("teapot:3,reset"))
    >>> opts.faults
    (('teapot', 3.0), ('reset', 1.0))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

__all__ = [
    "DEFAULT_FAULTS",
    "DEFAULT_PORTS",
    "FAULT_KINDS",
    "SERVER_KINDS",
    "Faults",
    "ServerOptions",
    "data_dir",
    "describe_faults",
    "parse_faults",
]

SERVER_KINDS: tuple[str, ...] = ("local", "delay", "error")
"""Server kinds, in the order their default ports follow."""

DEFAULT_PORTS: dict[str, int] = {"local": 8000, "delay": 8001, "error": 8002}
"""The ports the book's clients expect for each kind."""

FAULT_KINDS: tuple[str, ...] = (
    "teapot",
    "unavailable",
    "reset",
    "truncate",
    "stall",
    "html",
)
"""Every fault the ERROR server can inject (see the README table)."""

Faults = tuple[tuple[str, float], ...]

DEFAULT_FAULTS: Faults = (("teapot", 1.0),)
"""The book's only fault: 418 I'm a Teapot."""


def data_dir() -> Path:
    """Return the folder shipped inside the package that holds ``flags/xx/``."""
    # Resolved from the installed package, never the cwd, so the servers work
    # from any folder after `pip install .`.
    return Path(str(resources.files(__package__).joinpath("data")))


def parse_faults(spec: str) -> Faults:
    """Parse ``--faults``: comma-separated kinds, each optionally ``kind:weight``.

    ``all`` stands for every kind with weight 1. Raises `ValueError` with a
    message fit for a command line.
    """
    weights: dict[str, float] = {}
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, weight_text = item.partition(":")
        name = name.strip().lower()
        names = FAULT_KINDS if name == "all" else (name,)
        if name != "all" and name not in FAULT_KINDS:
            known = ", ".join(FAULT_KINDS)
            raise ValueError(f"unknown fault {name!r} (choose from: {known}, all)")
        weight = 1.0
        if sep:
            try:
                weight = float(weight_text)
            except ValueError:
                raise ValueError(
                    f"bad weight {weight_text!r} for fault {name!r}"
                ) from None
            if not math.isfinite(weight) or weight <= 0:
                raise ValueError(f"weight of fault {name!r} must be > 0")
        for kind in names:
            if kind in weights:
                raise ValueError(f"fault {kind!r} given more than once")
            weights[kind] = weight
    if not weights:
        raise ValueError("no fault kinds given")
    return tuple(weights.items())


def describe_faults(faults: Faults) -> str:
    """Render faults back in ``--faults`` syntax, weights only where not 1."""
    return ",".join(k if w == 1 else f"{k}:{w:g}" for k, w in faults)


def _check_finite(name: str, value: float, low: float) -> None:
    if not math.isfinite(value) or value < low:
        raise ValueError(f"{name} must be a number >= {low:g}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class ServerOptions:
    """Everything that shapes how a bundled server answers.

    Invalid combinations raise `ValueError` at construction, so a server never
    starts half-configured.
    """

    directory: Path = field(default_factory=data_dir)
    """
    Folder to serve. Defaults to the packaged data, which holds ``flags/xx/xx.gif``
    and ``flags/xx/metadata.json`` for the 194 countries.
    """
    bind: str = "127.0.0.1"
    """
    Address to listen on. Loopback by default so a test server is never exposed;
    use ``0.0.0.0`` or ``::`` to serve other machines.
    """
    seed: int | None = None
    """
    Seed of the delay/fault plan. `None` lets the server pick one at random (and
    print it, so the run can be replayed).
    """
    min_delay: float = 0.5
    """Shortest delay, in seconds, before a GET is answered (DELAY and ERROR)."""
    max_delay: float = 5.0
    """Longest delay, in seconds, before a GET is answered (DELAY and ERROR)."""
    error_rate: float = 0.25
    """Fraction of GET requests, 0 to 1, that get a fault (ERROR only)."""
    faults: Faults = DEFAULT_FAULTS
    """
    Weighted fault kinds to choose from when a request is faulted, e.g.
    ``(("teapot", 3.0), ("truncate", 1.0))``; build it with `parse_faults`.
    """
    stall: float = 15.0
    """
    Seconds the ``stall`` fault holds the body back after the headers: longer than
    a client's usual timeout, so the client must give up first.
    """
    idle_timeout: float = 10.0
    """
    Seconds an idle keep-alive connection may stay open before the server closes
    it. Longer than httpx's 5 s keep-alive expiry so the client, not the server,
    normally retires a connection and never reuses one being closed. Also the
    time a request head may take from its first byte to its blank line.
    """
    log: bool = False
    """Print one book-style line per request (``BR delay: 2.31s 200``) on stderr."""

    def __post_init__(self) -> None:
        _check_finite("min delay", self.min_delay, 0)
        _check_finite("max delay", self.max_delay, 0)
        if self.max_delay < self.min_delay:
            raise ValueError(
                f"max delay ({self.max_delay:g}) is below"
                f" min delay ({self.min_delay:g})"
            )
        if not (math.isfinite(self.error_rate) and 0 <= self.error_rate <= 1):
            raise ValueError(
                f"error rate must be between 0 and 1, got {self.error_rate!r}"
            )
        _check_finite("stall", self.stall, 0)
        if not (math.isfinite(self.idle_timeout) and self.idle_timeout > 0):
            raise ValueError(f"idle timeout must be > 0, got {self.idle_timeout!r}")
        if not self.faults:
            raise ValueError("no fault kinds given")
        for kind, weight in self.faults:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault {kind!r}")
            if not (math.isfinite(weight) and weight > 0):
                raise ValueError(f"weight of fault {kind!r} must be > 0")
        if self.seed is not None and self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not self.directory.is_dir():
            raise ValueError(f"directory not found: {self.directory}")
