"""Seeded determinism: the same seed answers the same requests the same way."""

from __future__ import annotations

import io
import re
import time
from collections import defaultdict

import httpx2 as httpx

from flags2.servers.options import parse_faults
from flags2.servers.plan import planned
from flags2.servers.server import FlagServer
from flags2.servers.testing import ServerFactory

FAULTS = "teapot,unavailable,reset,truncate,html"
PATHS = [
    "/flags/br/br.gif",
    "/flags/cn/cn.gif",
    "/flags/zz/zz.gif",
    "/flags/br/metadata.json",
]
SEQUENCE = [PATHS[i % 4] for i in (0, 1, 0, 2, 3, 0, 1, 1, 2, 3, 0, 2, 1, 3, 3, 0)] * 2
_LINE = re.compile(r"(\S+) delay: (\d+\.\d\d)s (\S+)(?: (\S+))?")


def _start(start_server: ServerFactory, seed: int) -> tuple[FlagServer, io.StringIO]:
    log = io.StringIO()
    server = start_server(
        "error",
        seed=seed,
        error_rate=0.5,
        faults=parse_faults(FAULTS),
        max_delay=0.01,
        log=True,
        log_stream=log,
    )
    return server, log


def _log_lines(log: io.StringIO, count: int) -> list[str]:
    """The log's lines once `count` are there: a handler logs after answering."""
    deadline = time.monotonic() + 10
    while len(lines := log.getvalue().splitlines()) < count:
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    return lines


def _outcomes(server: FlagServer, paths: list[str]) -> list[str]:
    """What a client observes for each request, in order."""
    seen = []
    with httpx.Client(base_url=server.root_url) as client:
        for path in paths:
            try:
                response = client.get(path)
            except httpx.TransportError as exc:
                seen.append(type(exc).__name__)
            else:
                seen.append(
                    f"{response.status_code} {response.headers['content-type']}"
                )
    return seen


def _per_path(paths: list[str], values: list[str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for path, value in zip(paths, values, strict=True):
        grouped[path].append(value)
    return dict(grouped)


def test_same_seed_same_answers(start_server: ServerFactory) -> None:
    server_a, log_a = _start(start_server, 11)
    server_b, log_b = _start(start_server, 11)
    seen_a = _outcomes(server_a, SEQUENCE)
    seen_b = _outcomes(server_b, SEQUENCE)
    assert seen_a == seen_b
    # Same delays, same faults. In any order: a handler writes its line after
    # its answer, so under load the next request's line can come first.
    assert sorted(_log_lines(log_a, len(SEQUENCE))) == sorted(
        _log_lines(log_b, len(SEQUENCE))
    )
    assert len(set(seen_a)) >= 4  # the sequence does exercise several faults


def test_different_seed_different_answers(start_server: ServerFactory) -> None:
    server_a, log_a = _start(start_server, 11)
    server_b, log_b = _start(start_server, 12)
    _outcomes(server_a, SEQUENCE)
    _outcomes(server_b, SEQUENCE)
    # Every line of both: a log read while its last lines are still to come
    # would differ from any other, whatever the seeds.
    lines_a = _log_lines(log_a, len(SEQUENCE))
    lines_b = _log_lines(log_b, len(SEQUENCE))
    assert len(lines_a) == len(lines_b) == len(SEQUENCE)
    assert sorted(lines_a) != sorted(lines_b)


def test_arrival_order_changes_nothing_per_path(start_server: ServerFactory) -> None:
    server_a, _ = _start(start_server, 11)
    server_b, _ = _start(start_server, 11)
    shuffled = SEQUENCE[::-1][3:] + SEQUENCE[::-1][:3]
    seen_a = _per_path(SEQUENCE, _outcomes(server_a, SEQUENCE))
    seen_b = _per_path(shuffled, _outcomes(server_b, shuffled))
    assert seen_a == seen_b


def test_server_does_what_planned_says(start_server: ServerFactory) -> None:
    server, log = _start(start_server, 11)
    _outcomes(server, SEQUENCE)
    # Compared per path and in any order: a handler writes its line after its
    # answer, so under load the next request's line can come first.
    done: dict[str, list[tuple[float, str | None]]] = defaultdict(list)
    for line in _log_lines(log, len(SEQUENCE)):
        match = _LINE.fullmatch(line)
        assert match is not None, line
        fault = match[4] or ("reset" if match[3] == "reset" else None)
        done[match[1]].append((float(match[2]), fault))
    planned_by_label: dict[str, list[tuple[float, str | None]]] = defaultdict(list)
    nth: dict[str, int] = defaultdict(int)
    for path in SEQUENCE:
        plan = planned(11, "error", path, nth[path], server.options)
        nth[path] += 1
        label = path.split("/")[2].upper() if path.endswith(".gif") else path
        planned_by_label[label].append((round(plan.delay, 2), plan.fault))
    assert {k: sorted(v, key=str) for k, v in done.items()} == {
        k: sorted(v, key=str) for k, v in planned_by_label.items()
    }


def test_quiet_by_default(start_server: ServerFactory) -> None:
    log = io.StringIO()
    server = start_server("error", error_rate=1.0, log_stream=log)
    _outcomes(server, PATHS)
    assert log.getvalue() == ""
