from __future__ import annotations

import re

import pytest

from flags2.urls import (
    BadURL,
    check_base_url,
    check_proxies,
    flag_url,
    redact,
    run_proxy,
)


def test_flag_url_keeps_the_base_as_given_and_lowers_the_code() -> None:
    assert (
        flag_url("http://user:S3cret@Host:8000/Data/Flags", "BR")
        == "http://user:S3cret@Host:8000/Data/Flags/br/br.gif"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:S3cret@host/flags", "http://user:***@host/flags"),
        ("https://u:p@ss@host:8443/f?x#y", "https://u:***@host:8443/f?x#y"),
        ("http://user@host/flags", "http://user@host/flags"),  # no password
        ("http://host/a:b@c", "http://host/a:b@c"),  # '@' in the path only
        ("http://u:pw@[::1", "http://u:***@[::1"),  # malformed, still hidden
        ("u:pw@proxy:3128", "u:***@proxy:3128"),  # a bare proxy setting
        ("http://host/flags", "http://host/flags"),
    ],
)
def test_redact_hides_only_the_password(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_a_good_base_url_is_kept_as_typed_without_its_trailing_slash() -> None:
    assert check_base_url("HTTP://u:S3cret@Host/Data/Flags/") == (
        "HTTP://u:S3cret@Host/Data/Flags"
    )
    assert check_base_url("http://[::1]:8000/flags") == "http://[::1]:8000/flags"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://host/flags", "not an http(s):// base URL"),
        ("http:///flags", "not an http(s):// base URL"),
        ("http://host/flags?token=abc", "query"),
        ("http://host/flags?", "query"),
        ("http://host/flags#top", "fragment"),
        ("http://[::1", "malformed host or port"),
        ("http://[zz]/flags", "malformed host or port"),
        ("http://host:99999/flags", "malformed host or port"),
        ("http://host:x/flags", "malformed host or port"),
        ("http://host:0/flags", "port 0"),
        ("http://ho st/flags", "spaces or control characters"),
        ("http://host/fl\x00ags", "spaces or control characters"),
    ],
)
def test_bad_base_urls_say_why(url: str, problem: str) -> None:
    with pytest.raises(BadURL, match=re.escape(problem)):
        check_base_url(url)


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"ALL_PROXY": "socks5://u:pw@127.0.0.1:1080"}, "ALL_PROXY='socks5://u:***@"),
        ({"https_proxy": "ftp://proxy:21"}, "https_proxy="),
        ({"HTTP_PROXY": "http://[::1"}, "HTTP_PROXY='http://[::1': malformed"),
        ({"HTTP_PROXY": "http://:3128"}, "no proxy host"),
    ],
)
def test_unusable_proxy_settings_name_the_variable(
    environ: dict[str, str], problem: str
) -> None:
    with pytest.raises(BadURL) as caught:
        check_proxies(environ)
    assert problem in str(caught.value)
    assert "pw" not in str(caught.value)


def test_usable_proxy_settings_pass() -> None:
    check_proxies(
        {
            "HTTP_PROXY": "proxy.example:3128",  # httpx reads it as http://
            "https_proxy": "https://u:pw@proxy.example:3129",
            "FTP_PROXY": "socks5://ignored:1",  # httpx never reads it
            "NO_PROXY": "localhost",
            "ALL_PROXY": "",
        }
    )


def test_run_proxy_is_the_one_that_applies_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert run_proxy("http://host/flags") is None
    monkeypatch.setenv("HTTP_PROXY", "http://u:pw@proxy:3128")
    assert run_proxy("http://host/flags") == "http://u:***@proxy:3128"
    assert run_proxy("https://host/flags") is None
    monkeypatch.setenv("NO_PROXY", "host")
    assert run_proxy("http://host/flags") is None
