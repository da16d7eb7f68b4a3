"""The matrix: code sets, cells, their -m capped as each mode caps it, bad lists."""

from __future__ import annotations

import pytest

from flags2.bench import matrix


def test_demo_is_pop20_in_each_mode_then_every_code_at_1000() -> None:
    cells = matrix.demo_cells(["delay"])
    got = [(c.mode, c.max_req, c.concurrency, c.codes.label) for c in cells]
    assert got == [
        ("sequential", 1, 1, "POP20"),
        ("threadpool", 30, 20, "POP20"),
        ("asyncio", 5, 5, "POP20"),
        ("threadpool", 1000, 676, "-e"),
        ("asyncio", 1000, 676, "-e"),
        ("processpool", 20, 20, "POP20"),
        ("threadpool+map", 30, 20, "POP20"),
    ]


def test_matrix_crosses_everything_once() -> None:
    sets = matrix.code_sets(["b"], False, True, None)
    assert [(s.label, len(s.codes)) for s in sets] == [("B", 26), ("-e", 676)]
    cells = matrix.matrix(["sequential", "asyncio"], ["delay", "error"], [5, 30], sets)
    # sequential is one run whatever -m: 2 servers x 2 sets x (1 + 2 asyncio -m)
    assert len(cells) == 12
    assert {c.concurrency for c in cells if c.mode == "sequential"} == {1}
    assert {c.concurrency for c in cells if c.codes.label == "B"} == {1, 5, 26}


def test_limit_applies_to_every_set_and_shows_in_its_label() -> None:
    sets = matrix.code_sets([], True, False, 100)
    assert sets[0].label == "-a -l 100" and sets[0].args == ("-a", "-l", "100")
    assert len(sets[0].codes) == 100


def test_curl_is_capped_like_curl_caps_itself() -> None:
    sets = matrix.code_sets([], False, True, None)
    cells = matrix.matrix(["curl"], ["url"], [1000], sets)
    assert (cells[0].max_req, cells[0].concurrency) == (1000, 300)


def test_aria2c_runs_at_the_cells_concurrency() -> None:
    sets = matrix.code_sets([], True, False, None)
    cells = matrix.matrix(["aria2c"], ["url"], [1000, 30], sets)
    assert [(c.mode, c.max_req, c.concurrency) for c in cells] == [
        ("aria2c", 1000, 194),
        ("aria2c", 30, 30),
    ]
    assert all(cell.is_peer for cell in cells)


def test_peers_are_modes_only_with_a_url() -> None:
    url = "http://127.0.0.1:9/flags"
    assert matrix.parse_modes("Asyncio,curl,aria2c,curl", url=url) == [
        "asyncio",
        "curl",
        "aria2c",
    ]
    with pytest.raises(ValueError, match="--modes aria2c needs --url"):
        matrix.parse_modes("asyncio,aria2c", url=None)


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (matrix.parse_servers, "delay,remote", "unknown server 'remote'"),
        (matrix.parse_servers, ",", "no server given"),
        (matrix.parse_max_req, "5,-1", "each value must be >= 1"),
        (matrix.parse_max_req, "", "no value given"),
    ],
)
def test_bad_lists_say_what_is_wrong(parse: object, text: str, message: str) -> None:
    assert callable(parse)
    with pytest.raises(ValueError, match=message):
        parse(text)


def test_repeated_values_count_once() -> None:
    assert matrix.parse_max_req("5, 30,5") == [5, 30]
    assert matrix.parse_servers("DELAY,error,delay") == ["delay", "error"]


def test_http_versions_make_a_row_each_and_aria2c_only_a_1_1_row() -> None:
    sets = matrix.code_sets([], False, False, None)
    cells = matrix.matrix(["asyncio", "aria2c"], ["url"], None, sets, ["1.1", "2"])
    assert [(c.mode, c.http) for c in cells] == [
        ("asyncio", "1.1"),
        ("asyncio", "2"),
        ("aria2c", "1.1"),  # aria2c has no HTTP/2
    ]
    assert {c.http for c in matrix.matrix(["asyncio"], ["url"], None, sets)} == {None}


@pytest.mark.parametrize(
    ("text", "versions"),
    [("1.1,2", ["1.1", "2"]), ("HTTP/2, http/1.1", ["2", "1.1"]), ("2,2", ["2"])],
)
def test_http_list_is_parsed_in_order(text: str, versions: list[str]) -> None:
    assert matrix.parse_http(text, https=True) == versions


def test_http_1_1_alone_fits_a_plain_http_server() -> None:
    assert matrix.parse_http("1.1", https=False) == ["1.1"]
    with pytest.raises(ValueError, match="--http 2 needs an https --url or --servers"):
        matrix.parse_http("1.1,2", https=False)
