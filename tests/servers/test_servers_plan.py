"""The seeded plan and the options it reads."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from flags2.servers.options import FAULT_KINDS, ServerOptions, data_dir, parse_faults
from flags2.servers.plan import Planned, planned

OPTS = ServerOptions(seed=7, min_delay=0.5, max_delay=2.0, error_rate=0.25)
PATHS = [f"/flags/{a}{b}/{a}{b}.gif" for a in "abcdefghij" for b in "klmnopqrst"]


def test_plan_is_a_pure_function_of_its_inputs() -> None:
    first = [planned(7, "error", p, n, OPTS) for p in PATHS for n in range(3)]
    again = [planned(7, "error", p, n, OPTS) for p in reversed(PATHS) for n in range(3)]
    by_key = dict(
        zip([(p, n) for p in reversed(PATHS) for n in range(3)], again, strict=True)
    )
    assert first == [by_key[(p, n)] for p in PATHS for n in range(3)]


def test_seed_path_and_nth_all_change_the_plan() -> None:
    base = [planned(7, "delay", p, 0, OPTS).delay for p in PATHS]
    assert base != [planned(8, "delay", p, 0, OPTS).delay for p in PATHS]
    assert base != [planned(7, "delay", p, 1, OPTS).delay for p in PATHS]
    assert len(set(base)) == len(base)  # distinct paths, distinct delays


def test_delays_span_the_configured_range() -> None:
    delays = [planned(7, "delay", p, n, OPTS).delay for p in PATHS for n in range(5)]
    assert all(0.5 <= d <= 2.0 for d in delays)
    # Uniform over 500 draws: both ends of the range are reached closely.
    assert min(delays) < 0.6 and max(delays) > 1.9


def test_local_never_waits_nor_fails() -> None:
    always = ServerOptions(seed=1, error_rate=1.0)
    assert {planned(1, "local", p, 0, always) for p in PATHS} == {Planned(0.0, None)}


def test_delay_never_faults_and_error_shares_its_delays() -> None:
    always = ServerOptions(seed=1, error_rate=1.0, min_delay=0, max_delay=1)
    delay = [planned(3, "delay", p, 0, always) for p in PATHS]
    error = [planned(3, "error", p, 0, always) for p in PATHS]
    assert all(d.fault is None for d in delay)
    assert all(e.fault == "teapot" for e in error)
    assert [d.delay for d in delay] == [e.delay for e in error]


@pytest.mark.parametrize("rate", [0.0, 0.25, 1.0])
def test_error_rate_is_the_fraction_of_faults(rate: float) -> None:
    opts = ServerOptions(seed=5, error_rate=rate)
    faults = [planned(5, "error", p, n, opts).fault for p in PATHS for n in range(10)]
    share = sum(f is not None for f in faults) / len(faults)
    assert share == pytest.approx(rate, abs=0.04)


def test_fault_weights_are_honoured() -> None:
    opts = ServerOptions(seed=5, error_rate=1.0, faults=parse_faults("teapot:3,reset"))
    counts = Counter(
        planned(5, "error", p, n, opts).fault for p in PATHS for n in range(10)
    )
    assert set(counts) == {"teapot", "reset"}
    assert counts["teapot"] / 1000 == pytest.approx(0.75, abs=0.05)


def test_plan_rejects_unknown_kind_and_negative_nth() -> None:
    with pytest.raises(ValueError, match="kind"):
        planned(1, "slow", "/x", 0, OPTS)
    with pytest.raises(ValueError, match="nth"):
        planned(1, "delay", "/x", -1, OPTS)


def test_parse_faults() -> None:
    assert parse_faults("teapot") == (("teapot", 1.0),)
    assert parse_faults("teapot:3, truncate:1") == (("teapot", 3.0), ("truncate", 1.0))
    assert [k for k, _ in parse_faults("all")] == list(FAULT_KINDS)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus", "unknown fault 'bogus'"),
        ("teapot:x", "bad weight"),
        ("teapot:0", "must be > 0"),
        ("teapot,teapot", "more than once"),
        ("", "no fault"),
    ],
)
def test_parse_faults_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_faults(spec)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("min_delay", -1.0, "min delay"),
        ("max_delay", 0.1, "below min delay"),
        ("error_rate", 1.5, "between 0 and 1"),
        ("stall", float("nan"), "stall"),
        ("idle_timeout", 0.0, "idle timeout"),
        ("directory", Path("/no/such/dir"), "directory not found"),
        ("faults", (("bogus", 1.0),), "unknown fault"),
    ],
)
def test_options_reject_bad_values(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServerOptions(**{field: value})  # type: ignore[arg-type]


def test_default_directory_is_the_packaged_flags() -> None:
    opts = ServerOptions()
    assert opts.directory == data_dir()
    gifs = sorted(opts.directory.glob("flags/*/*.gif"))
    assert len(gifs) == 194
    assert (opts.directory / "flags" / "br" / "metadata.json").is_file()
