"""The ideal elapsed time of a run, computed from the servers' seeded plan.

A bundled DELAY or ERROR server started with a seed decides every request's
delay and fault in advance (:func:`flags2.servers.plan.planned`), so the best time any
client could achieve is known before the run: each request holds one of the
``-m`` slots for its planned cost, the slots are taken in submission order (the
codes sorted, as every mode submits them), and the ideal is the makespan of
that schedule. Sequentially that is the sum of the costs; with ``-m`` at least
the number of codes it is the longest single request::

    >>> from flags2.servers.plan import Planned
    >>> costs = [request_cost([Planned(d, None)]).seconds for d in (3, 1, 2, 1)]
    >>> makespan(costs, 1), makespan(costs, 2), makespan(costs, 4)
    (7.0, 4.0, 3.0)

What one request costs (``timeout`` is the client's ``--timeout``):

* the attempt's planned delay, or ``timeout`` if the delay is longer (the client
  gives up first, and that counts as a transient error);
* ``stall`` adds ``min(stall, timeout)``: the headers come after the delay, then
  the body never does until the server closes or the client times out;
* ``unavailable`` (503) adds its ``Retry-After: 1`` when another attempt follows,
  because a client that honours the server must wait that long;
* every fault but ``html`` is transient: with ``--retries`` the next attempt is
  the same path's next GET (``nth + 1``), with its own planned delay and fault.
  ``html`` is a 200 with the wrong body, so it is never retried.

The client's own backoff between attempts is left out on purpose: it is the
client's policy, not a cost the server imposes, so it shows as lost efficiency.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flags2.servers.options import ServerOptions
from flags2.servers.plan import Planned, planned
from flags2.urls import flag_url

__all__ = [
    "IdealRun",
    "RequestCost",
    "flag_path",
    "ideal_run",
    "makespan",
    "request_cost",
]

# servers/handler.py answers its `unavailable` fault with "Retry-After: 1", and
# flags2.fetch honours it (capped at 10 s, which 1 s never reaches).
_RETRY_AFTER = 1.0
# A fault that is a wrong answer rather than a failed one: nothing to retry.
_PERMANENT_FAULTS = frozenset({"html"})


@dataclass(frozen=True, slots=True)
class RequestCost:
    """What one code costs a slot, and how its last attempt ended."""

    seconds: float
    """Time the request holds its slot, every attempt included."""
    attempts: int
    """Attempts made (1 + retries used)."""
    fails: bool
    """True if the last attempt failed, so the code ends as an ERROR."""


@dataclass(frozen=True, slots=True)
class IdealRun:
    """The ideal of one run: its makespan and what the plan predicts."""

    elapsed: float
    """Makespan of the schedule: the best time a client could achieve."""
    costs: tuple[RequestCost, ...]
    """One per code, in submission order."""

    @property
    def errors(self) -> int:
        """Codes the plan makes fail whatever the client does."""
        return sum(cost.fails for cost in self.costs)

    @property
    def attempts(self) -> int:
        """GET requests the plan makes a perfect client send."""
        return sum(cost.attempts for cost in self.costs)


def request_cost(
    attempts: Sequence[Planned], *, timeout: float = 10.0, stall: float = 15.0
) -> RequestCost:
    """Cost of one request given the plan of each attempt it may make.

    `attempts` holds the plan of the 1st, 2nd... GET of the path: one per
    attempt the client is allowed (``retries + 1``); later ones are used only
    while the earlier ones fail transiently.
    """
    if not attempts:
        raise ValueError("a request makes at least one attempt")
    seconds = 0.0
    for used, plan in enumerate(attempts, start=1):
        last = used == len(attempts)
        if plan.delay >= timeout:
            # The client's read timeout fires before the server answers.
            seconds += timeout
        else:
            seconds += plan.delay
            if plan.fault is None:
                return RequestCost(seconds, used, fails=False)
            if plan.fault == "stall":
                seconds += min(stall, timeout)
            elif plan.fault in _PERMANENT_FAULTS:
                return RequestCost(seconds, used, fails=True)
            elif plan.fault == "unavailable" and not last:
                seconds += _RETRY_AFTER
    return RequestCost(seconds, len(attempts), fails=True)


def makespan(costs: Iterable[float], slots: int) -> float:
    """Finish time of `costs` run in order on `slots` slots, each to the first free.

    This is how a thread pool or an asyncio semaphore hands out work, so it is
    the best the client can do given the order it submits requests in.
    """
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots}")
    free_at = [0.0] * slots  # a heap: when each slot is next free
    end = 0.0
    for cost in costs:
        start = heapq.heappop(free_at)
        finish = start + cost
        end = max(end, finish)
        heapq.heappush(free_at, finish)
    return end


def flag_path(prefix: str, cc: str) -> str:
    """The request path of `cc`'s flag, as the server plans it: ``/flags/br/br.gif``."""
    return flag_url(prefix.rstrip("/"), cc)


def ideal_run(
    cc_list: Sequence[str],
    *,
    kind: str,
    options: ServerOptions,
    seed: int,
    concurrency: int,
    retries: int = 0,
    timeout: float = 10.0,
    prefix: str = "/flags",
) -> IdealRun:
    """The ideal of downloading `cc_list` from a fresh `kind` server seeded `seed`.

    "Fresh" matters: the plan depends on how many times each path was asked for
    before, so the server must not have served these paths yet.
    """
    costs = tuple(
        request_cost(
            [
                planned(seed, kind, flag_path(prefix, cc), nth, options)
                for nth in range(retries + 1)
            ],
            timeout=timeout,
            stall=options.stall,
        )
        for cc in cc_list
    )
    slots = max(1, min(concurrency, len(costs)))
    elapsed = makespan((cost.seconds for cost in costs), slots)
    return IdealRun(elapsed, costs)
