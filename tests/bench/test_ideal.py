"""The ideal time: request costs and makespans on small hand-made plans."""

from __future__ import annotations

import pytest

from flags2.bench.ideal import flag_path, ideal_run, makespan, request_cost
from flags2.servers.options import ServerOptions, parse_faults
from flags2.servers.plan import Planned, planned

COSTS = [3.0, 1.0, 2.0, 1.0]


def ok(delay: float) -> Planned:
    return Planned(delay, None)


def test_sequential_is_the_sum() -> None:
    assert makespan(COSTS, 1) == pytest.approx(7.0)


def test_slots_are_taken_in_submission_order() -> None:
    # Two slots: A runs 3; B runs 1, then 2 (ends at 3), then 1 (ends at 4).
    assert makespan(COSTS, 2) == pytest.approx(4.0)
    # Submission order matters: the long request last leaves a tail.
    assert makespan([3.0, 1.0, 1.0, 1.0, 1.0], 2) == pytest.approx(4.0)
    assert makespan([1.0, 1.0, 1.0, 1.0, 3.0], 2) == pytest.approx(5.0)


@pytest.mark.parametrize("slots", [4, 5, 1000])
def test_slots_at_least_n_is_the_longest_request(slots: int) -> None:
    assert makespan(COSTS, slots) == pytest.approx(3.0)


def test_no_requests_take_no_time_and_slots_must_be_positive() -> None:
    assert makespan([], 3) == 0.0
    with pytest.raises(ValueError, match="slots"):
        makespan(COSTS, 0)


def test_one_clean_attempt_costs_its_delay() -> None:
    cost = request_cost([ok(1.5), ok(9.0)])
    assert (cost.seconds, cost.attempts, cost.fails) == (1.5, 1, False)


def test_retries_add_each_attempts_planned_delay() -> None:
    attempts = [Planned(1.0, "teapot"), Planned(0.5, "reset"), ok(2.0)]
    cost = request_cost(attempts)
    assert (cost.seconds, cost.attempts, cost.fails) == (3.5, 3, False)


def test_without_retries_a_fault_is_an_error_after_its_delay() -> None:
    cost = request_cost([Planned(1.0, "teapot")])
    assert (cost.seconds, cost.attempts, cost.fails) == (1.0, 1, True)


def test_out_of_attempts_is_an_error() -> None:
    cost = request_cost([Planned(1.0, "teapot"), Planned(2.0, "truncate")])
    assert (cost.seconds, cost.attempts, cost.fails) == (3.0, 2, True)


def test_a_delay_past_the_timeout_costs_the_timeout_and_fails() -> None:
    cost = request_cost([ok(4.0)], timeout=3.1)
    assert cost.seconds == pytest.approx(3.1) and cost.fails
    retried = request_cost([ok(4.0), ok(1.0)], timeout=3.1)
    assert retried.seconds == pytest.approx(4.1) and not retried.fails


def test_a_stall_costs_the_shorter_of_stall_and_timeout() -> None:
    assert request_cost([Planned(1.0, "stall")], timeout=10, stall=15).seconds == 11.0
    assert request_cost([Planned(1.0, "stall")], timeout=10, stall=2).seconds == 3.0


def test_unavailable_waits_retry_after_only_before_a_retry() -> None:
    assert request_cost([Planned(1.0, "unavailable")]).seconds == 1.0
    retried = request_cost([Planned(1.0, "unavailable"), ok(0.5)])
    assert retried.seconds == pytest.approx(2.5)


def test_html_is_a_wrong_answer_never_retried() -> None:
    cost = request_cost([Planned(1.0, "html"), ok(0.5)])
    assert (cost.seconds, cost.attempts, cost.fails) == (1.0, 1, True)


def test_a_request_makes_at_least_one_attempt() -> None:
    with pytest.raises(ValueError):
        request_cost([])


def test_ideal_run_follows_the_servers_plan() -> None:
    opts = ServerOptions(seed=7, min_delay=0.1, max_delay=0.4)
    codes = ["BR", "CN", "ZZ"]
    delays = [
        planned(7, "delay", flag_path("/flags", cc), 0, opts).delay for cc in codes
    ]
    run = ideal_run(codes, kind="delay", options=opts, seed=7, concurrency=1)
    assert run.elapsed == pytest.approx(sum(delays))
    wide = ideal_run(codes, kind="delay", options=opts, seed=7, concurrency=1000)
    assert wide.elapsed == pytest.approx(max(delays))
    assert (wide.errors, wide.attempts) == (0, 3)


def test_ideal_run_on_error_counts_faults_and_retries() -> None:
    opts = ServerOptions(seed=3, error_rate=0.5, faults=parse_faults("teapot"))
    codes = [f"A{c}" for c in "ABCDEFGHIJ"]
    faulted = sum(
        planned(3, "error", flag_path("/flags", cc), 0, opts).fault is not None
        for cc in codes
    )
    assert faulted > 0  # the seed was picked so that this test means something
    plain = ideal_run(codes, kind="error", options=opts, seed=3, concurrency=10)
    assert plain.errors == faulted and plain.attempts == len(codes)
    retried = ideal_run(
        codes, kind="error", options=opts, seed=3, concurrency=10, retries=8
    )
    assert retried.attempts == len(codes) + sum(c.attempts - 1 for c in retried.costs)
    assert retried.attempts > len(codes)
    assert retried.errors < faulted


def test_flag_path_is_what_the_client_requests() -> None:
    assert flag_path("/flags/", "BR") == "/flags/br/br.gif"
