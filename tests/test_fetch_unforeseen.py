"""No exception escapes a flag: a bug planted in one flag's work, in every mode.

Each plant raises for BR alone, in one part of a flag's work: the plan, the
metadata, the name, the existing-file check, the save, the retry machinery,
the transport. The run must go on: the others saved, the report printed,
``--json`` written, and BR's error naming the exception's class. Ctrl-C stays
the exception to the rule (its signal paths are in test_interrupt.py).
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from pytest_httpserver import HTTPServer

from flags2 import fetch, metadata, save
from flags2.runner import EXIT_ERRORS, EXIT_INTERRUPTED, load_mode, run
from flags2.save import Saver
from flags2.settings import Settings
from flags2.status import flag_url
from tests.helpers import MODES, flag_bytes, leftovers, real_metadata, serve_flags

CODES = ["BR", "CN", "IN"]


class Planted(RuntimeError):
    """The bug planted for BR."""


def _is_br(arg: object) -> bool:
    if isinstance(arg, str):  # a code, a URL, a country or file name
        return "br" in arg.lower()
    return isinstance(arg, bytes) and b'"iso_cc": "BR"' in arg  # its metadata


def _for_br(real: Callable[..., Any], exc: BaseException) -> Callable[..., Any]:
    """`real`, except that it raises `exc` when an argument is about BR."""

    def planted(*args: Any, **kwargs: Any) -> Any:
        if any(_is_br(arg) for arg in (*args, *kwargs.values())):
            raise exc
        return real(*args, **kwargs)

    return planted


def _plant_in_wait(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    real = fetch._backoff

    def backoff(state: Any) -> float:
        if "/br/" in str(state.outcome.exception().request.url):
            raise exc
        return real(state)

    monkeypatch.setattr(fetch, "_backoff", backoff)


def _plant_in_send(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    # The client's send, under the retries, in both the blocking and async client.
    real, areal = httpx.Client.send, httpx.AsyncClient.send

    def send(self: httpx.Client, request: httpx.Request, **kw: Any) -> Any:
        if "/br/" in str(request.url):
            raise exc
        return real(self, request, **kw)

    async def asend(self: httpx.AsyncClient, request: httpx.Request, **kw: Any) -> Any:
        if "/br/" in str(request.url):
            raise exc
        return await areal(self, request, **kw)

    monkeypatch.setattr(httpx.Client, "send", send)
    monkeypatch.setattr(httpx.AsyncClient, "send", asend)


def _plant(where: str, monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    if where == "the plan":
        monkeypatch.setattr("flags2.fetch.flag_url", _for_br(flag_url, exc))
    elif where == "the metadata":
        planted = _for_br(metadata.country_name, exc)
        monkeypatch.setattr(fetch, "country_name", planted)
    elif where == "the name":
        planted = _for_br(save.country_file_name, exc)
        monkeypatch.setattr(fetch, "country_file_name", planted)
    elif where == "the existing-file check":
        monkeypatch.setattr(Saver, "existing", _for_br(Saver.existing, exc))
    elif where == "the save":
        monkeypatch.setattr(Saver, "save", _for_br(Saver.save, exc))
    elif where == "the retry wait":
        _plant_in_wait(monkeypatch, exc)
    elif where == "the transport":
        _plant_in_send(monkeypatch, exc)
    else:  # pragma: no cover - a typo in the table below
        raise AssertionError(where)


PLACES = [
    "the plan",
    "the metadata",
    "the name",
    "the existing-file check",
    "the save",
    "the retry wait",
    "the transport",
]


def _serve(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/flags/br/br.gif").respond_with_data(
        b"busy", status=503
    )  # BR is retried once, so the retry machinery runs for it
    serve_flags(httpserver, CODES)
    for cc in CODES:
        httpserver.expect_request(
            f"/flags/{cc.lower()}/metadata.json"
        ).respond_with_data(real_metadata(cc), content_type="application/json")


def _settings(mode: str, httpserver: HTTPServer, dest: Path) -> Settings:
    return Settings(
        base_url=httpserver.url_for("/flags"), site="CUSTOM", dest=dest,
        concurrency=load_mode(mode).DEFAULT_CONCUR_REQ, timeout=5.0, retries=1,
        names=True, skip_existing=True,
    )  # fmt: skip


@pytest.mark.parametrize("exc", [Planted("planted bug"), RecursionError("deep")])
@pytest.mark.parametrize("where", PLACES)
@pytest.mark.parametrize("mode", MODES)
def test_an_unforeseen_exception_is_that_flags_error_and_the_run_goes_on(
    httpserver: HTTPServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, mode: str, where: str, exc: Exception,
) -> None:  # fmt: skip
    _serve(httpserver)
    _plant(where, monkeypatch, exc)
    dest, record = tmp_path / "dest", tmp_path / "run.json"
    dest.mkdir()
    settings = _settings(mode, httpserver, dest)
    assert run(mode, CODES, settings, json_path=str(record)) == EXIT_ERRORS
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    assert "  2 flags downloaded." in out and "  1 error." in out, out
    assert "Elapsed time:" in out
    assert sorted(p.name for p in dest.iterdir()) == ["China.gif", "India.gif"]
    assert (dest / "China.gif").read_bytes() == flag_bytes("CN")
    assert leftovers(dest) == []
    flags = {f["cc"]: f for f in json.loads(record.read_text())["flags"]}
    assert [flags[cc]["status"] for cc in CODES] == ["ERROR", "OK", "OK"]
    # Its class, by name (after "metadata.json: " when that request failed).
    assert flags["BR"]["error"].endswith(f"{exc} {type(exc)}"), flags["BR"]


class _Unprintable(RuntimeError):
    def __str__(self) -> str:
        raise ValueError("no text")


class _Noisy(RuntimeError):
    def __str__(self) -> str:
        return "\x1b[2Jline one\nline two " + "x" * 1000


@pytest.mark.parametrize("exc", [_Noisy(), _Unprintable()], ids=["noisy", "mute"])
@pytest.mark.parametrize("mode", MODES)
def test_an_unforeseen_error_is_one_printable_line(
    httpserver: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], mode: str, exc: Exception,
) -> None:  # fmt: skip
    _serve(httpserver)
    _plant("the plan", monkeypatch, exc)
    settings = _settings(mode, httpserver, tmp_path)
    assert run(mode, CODES, settings, json_path=str(tmp_path / "run.json")) == 1
    capsys.readouterr()
    br = json.loads((tmp_path / "run.json").read_text())["flags"][0]
    assert br["status"] == "ERROR"
    error = br["error"]
    if isinstance(exc, _Unprintable):
        assert error == str(_Unprintable)
        return
    assert error.isprintable() and len(error) == 300, error
    assert error.startswith("\\x1b[2Jline one\\nline two xxx")
    assert error.endswith(f"x... {_Noisy}")


@pytest.mark.parametrize("mode", MODES)
def test_a_planted_ctrl_c_still_stops_the_run(
    httpserver: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], mode: str,
) -> None:  # fmt: skip
    _serve(httpserver)
    interrupt = KeyboardInterrupt()
    _plant("the metadata", monkeypatch, interrupt)
    dest, record = tmp_path / "dest", tmp_path / "run.json"
    dest.mkdir()
    settings = _settings(mode, httpserver, dest)
    assert run(mode, CODES, settings, json_path=str(record)) == EXIT_INTERRUPTED
    # asyncio logs a task that ended with the interrupt when it is collected:
    # collected here (the planted exception's frames hold it), so that the
    # log lands in this test's capture.
    interrupt.__traceback__ = interrupt.__context__ = None
    gc.collect()
    assert "Elapsed time:" in capsys.readouterr().out
    flags = {f["cc"]: f for f in json.loads(record.read_text())["flags"]}
    assert flags["BR"]["status"] == "CANCELLED"
    assert leftovers(dest) == []
