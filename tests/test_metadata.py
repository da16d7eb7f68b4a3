"""Hostile ``metadata.json`` bodies: that flag's ERROR, and the run goes on.

Each body is served as BR's metadata beside CN's real one, through a whole run
in every mode (report, ``--json``, exit status) and, for the body of the issue
that found it, through ``python -m flags2`` as a process: no traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from flags2.metadata import MAX_DEPTH, MAX_METADATA_BYTES, BadMetadata, country_name
from flags2.runner import EXIT_ERRORS, load_mode, run
from flags2.settings import Settings
from tests.helpers import MODES, flag_bytes, real_metadata, serve_flags, serve_metadata


def _named(country: str, extra: str = "") -> bytes:
    return f'{{"iso_cc": "BR", "country": {json.dumps(country)}{extra}}}'.encode()


BRAZIL = _named("Brazil")
NOT_JSON, NO_NAME = "metadata.json is not JSON", 'metadata.json has no "country" name'
DEEP, NOT_UTF8 = f"{NOT_JSON}: nested too deeply", f"{NOT_JSON}: it is not UTF-8"
NUMBER, LARGE = "metadata.json has a number", "metadata.json too large"
TWICE, UNSAFE = "metadata.json gives the key {!r} twice", "unsafe country name"

HOSTILE: dict[str, tuple[bytes, str]] = {
    # id: (body, the start of BR's error)
    "deep arrays (the issue's)": (b"[" * 200_000, LARGE),
    "deep arrays": (b"[" * 10_000, DEEP),
    "deep objects": (b'{"a":' * 3_000, DEEP),
    "deep in the object": (_named("B", ', "x": ' + "[" * 5000 + "]" * 5000), DEEP),
    "huge integer": (_named("Brazil", ', "area": ' + "9" * 5_000), NUMBER),
    "huge negative integer": (_named("Brazil", ', "a": -' + "9" * 200), NUMBER),
    "long fraction": (_named("Brazil", ', "a": 0.' + "1" * 200), NUMBER),
    "float overflow": (_named("Brazil", ', "a": 1e999'), f"{NUMBER} out of range"),
    "NaN": (_named("Brazil", ', "a": NaN'), f"{NOT_JSON}: NaN"),
    "Infinity": (_named("Brazil", ', "a": Infinity'), f"{NOT_JSON}: Infinity"),
    "-Infinity": (_named("Brazil", ', "a": -Infinity'), f"{NOT_JSON}: -Infinity"),
    "top level string": (b'"Brazil"', NO_NAME),
    "top level array": (b'["Brazil"]', NO_NAME),
    "top level null": (b"null", NO_NAME),
    "top level number": (b"7", NO_NAME),
    "name null": (b'{"country": null}', NO_NAME),
    "name a list": (b'{"country": ["Brazil"]}', NO_NAME),
    "name an object": (b'{"country": {"name": "Brazil"}}', NO_NAME),
    "name a number": (b'{"country": 1e5}', NO_NAME),
    "name empty": (_named(""), f"{UNSAFE} '': empty"),
    "name huge": (_named("x" * 15_000), f"{UNSAFE} 'xxxx"),
    "name a lone surrogate": (b'{"country": "Bra\\ud800zil"}', UNSAFE),
    "name with a NUL escape": (b'{"country": "Bra\\u0000zil"}', UNSAFE),
    "raw control character": (b'{"country": "Bra\x01zil"}', NOT_JSON),
    "invalid UTF-8": (b'{"country": "Bra\xffzil"}', NOT_UTF8),
    "overlong UTF-8": (b'{"country": "\xc0\xafetc"}', NOT_UTF8),
    "UTF-8 with a BOM": (
        b"\xef\xbb\xbf" + BRAZIL,
        f"{NOT_JSON}: it starts with a byte",
    ),
    "UTF-16 with a BOM": (BRAZIL.decode().encode("utf-16"), NOT_UTF8),
    "UTF-16 without a BOM": (BRAZIL.decode().encode("utf-16-le"), NOT_JSON),
    "UTF-32": (BRAZIL.decode().encode("utf-32"), NOT_UTF8),
    "key given twice": (
        _named("Brazil", ', "country": "Evil"'),
        TWICE.format("country"),
    ),
    "inner key twice": (_named("Brazil", ', "x": {"a": 1, "a": 2}'), TWICE.format("a")),
    "trailing data": (BRAZIL + b" {}", NOT_JSON),
    "empty body": (b"", NOT_JSON),
    "far too large": (b" " * (4 * 1024 * 1024) + BRAZIL, LARGE),
    "just too large": (_named("Brazil", " " * MAX_METADATA_BYTES), LARGE),
}


@pytest.mark.parametrize(("body", "problem"), HOSTILE.values(), ids=HOSTILE.keys())
def test_country_name_refuses_hostile_metadata(body: bytes, problem: str) -> None:
    # Only BadMetadata: a name that is there but unsafe is the saver's to refuse.
    if problem.startswith("unsafe"):
        assert isinstance(country_name(body), str)
        return
    with pytest.raises(BadMetadata) as info:
        country_name(body)
    assert str(info.value).startswith(problem)
    assert "\n" not in str(info.value) and len(str(info.value)) < 120


@pytest.mark.parametrize(
    "body",
    [
        b'{"iso_cc": "BR", "country": "Brazil", "gec_cc": "BR"}',
        b'  {"country": "Brazil", "area": 8515767, "pop": 2.1e8, "eu": false}\n',
        b'{"country": "Brazil", "x": [[[[{"y": null}]]]]}',
        b'{"country": "Bra\\u007a\\u0069l"}',
        b'{"country": "Brazil", "a": ' + b"9" * 100 + b"}",
    ],
)
def test_country_name_reads_ordinary_metadata(body: bytes) -> None:
    assert country_name(body) == "Brazil"


def test_a_body_shorter_than_announced_is_refused() -> None:
    body = BRAZIL
    with pytest.raises(BadMetadata, match="incomplete: 5 of 99 bytes"):
        country_name(body, received=5, content_length="99")
    # A Content-Length that is no number is not a length (llhttp refuses it first).
    assert country_name(body, received=5, content_length="\xb2") == "Brazil"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("body", "problem"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_metadata_is_that_flags_error_and_the_run_goes_on(
    httpserver: HTTPServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    mode: str, body: bytes, problem: str,
) -> None:  # fmt: skip
    serve_flags(httpserver, ["BR", "CN"])
    serve_metadata(httpserver, {"BR": body, "CN": real_metadata("CN")})
    dest, record = tmp_path / "dest", tmp_path / "run.json"
    dest.mkdir()
    settings = Settings(
        base_url=httpserver.url_for("/flags"), site="CUSTOM", dest=dest, names=True,
        concurrency=load_mode(mode).DEFAULT_CONCUR_REQ, timeout=5.0,
    )  # fmt: skip
    assert run(mode, ["BR", "CN"], settings, json_path=str(record)) == EXIT_ERRORS
    out = capsys.readouterr().out
    assert "  1 flag downloaded." in out and "  1 error." in out, out
    assert [p.name for p in dest.iterdir()] == ["China.gif"]
    assert (dest / "China.gif").read_bytes() == flag_bytes("CN")
    flags = {f["cc"]: f for f in json.loads(record.read_text())["flags"]}
    assert flags["CN"]["status"] == "OK"
    assert flags["BR"]["status"] == "ERROR"
    assert flags["BR"]["error"].startswith(problem), flags["BR"]["error"]


@pytest.mark.parametrize("mode", MODES)
def test_the_issues_deep_metadata_is_no_traceback_in_a_real_run(
    httpserver: HTTPServer, tmp_path: Path, mode: str
) -> None:
    serve_flags(httpserver, ["BR", "CN"])
    serve_metadata(httpserver, {"BR": b"[" * 200_000, "CN": real_metadata("CN")})
    record = tmp_path / "run.json"
    done = subprocess.run(
        [sys.executable, "-m", "flags2", "download", "BR", "CN", "--names", "-v",
         "--mode", mode, "-s", httpserver.url_for("/flags"), "-d", str(tmp_path),
         "--json", str(record)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == EXIT_ERRORS, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "BR error: metadata.json too large" in done.stdout
    assert "CN OK" in done.stdout and "  1 error." in done.stdout
    assert (tmp_path / "China.gif").read_bytes() == flag_bytes("CN")
    assert json.loads(record.read_text())["flags"][0]["status"] == "ERROR"


def test_nesting_is_bounded_alike_on_every_python() -> None:
    # json's own bound is the recursion limit, which 3.13 raised: ours is fixed.
    inner = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    assert country_name(f'{{"country": "Brazil", "x": {inner}}}'.encode()) == "Brazil"
    deeper = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    with pytest.raises(BadMetadata, match="nested too deeply"):
        country_name(f'{{"country": "Brazil", "x": {deeper}}}'.encode())
    # Brackets inside a string, escaped quotes included, are not nesting.
    text = '"\\"' + "[" * 100 + '"'
    assert country_name(f'{{"country": "Brazil", "x": {text}}}'.encode()) == "Brazil"
