"""protocols/request_head.py: pure checks and helpers, values in and verdicts out."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from gunrunner.config import Options
from gunrunner.protocols.limits import Limits
from gunrunner.protocols.request_head import (
    PASSED,
    Forwarded,
    HeadCheck,
    accepts_trailers,
    apply_forwarded,
    check_head,
    other_target_ok,
    request_id,
    skip_blank_lines,
    split_absolute_form,
    with_host,
)
from gunrunner.proxy import ProxyTrust

LIMITS = dataclasses.replace(
    Limits.from_options(Options()),
    limit_request_line=100,
    limit_request_fields=5,
    limit_request_field_size=50,
    max_head_size=200,
    max_body_size=1000,
)
HOST = (b"host", b"example.com")


def check(
    method: bytes = b"GET",
    target: bytes = b"/",
    version: bytes = b"1.1",
    headers: list[tuple[bytes, bytes]] | None = None,
    known_host: bytes | None = b"example.com",
) -> HeadCheck:
    return check_head(
        method,
        target,
        version,
        [HOST] if headers is None else headers,
        limits=LIMITS,
        known_host=known_host,
    )


# (case, keyword arguments of check(), status, words of the reason)
REFUSED: list[Any] = [
    ("line-too-long", {"target": b"/" + b"a" * 90}, 414, "longer than 100 bytes"),
    ("connect", {"method": b"CONNECT", "target": b"example.com:443"}, 501, "not a proxy"),
    ("http-2", {"version": b"2.0"}, 505, "HTTP/2.0 is not supported"),
    ("http-0.9", {"version": b"0.9"}, 505, "HTTP/0.9"),
    ("authority-form", {"target": b"example.com:80"}, 400, "must be a path"),
    ("ftp-url", {"target": b"ftp://example.com/"}, 400, "must be a path"),
    ("star-not-options", {"target": b"*"}, 400, "must be a path"),
    ("too-many-fields", {"headers": [HOST] + [(b"x-a", b"1")] * 5}, 431, "more than 5"),
    ("field-too-long", {"headers": [HOST, (b"x-big", b"v" * 50)]}, 431, "'x-big' longer"),
    ("head-too-large", {"headers": [HOST] + [(b"x-f", b"v" * 40)] * 4}, 431, "too large"),
    ("no-host-1.1", {"headers": []}, 400, "missing Host"),
    ("no-host-1.2", {"headers": [], "version": b"1.2"}, 400, "missing Host"),
    (
        "cl-and-te",
        {"headers": [HOST, (b"content-length", b"3"), (b"transfer-encoding", b"chunked")]},
        400,
        "both Content-Length and Transfer-Encoding",
    ),
    ("bad-host", {"headers": [(b"host", b"a b")], "known_host": None}, 400, "not a valid host"),
    ("host-with-path", {"headers": [(b"host", b"x/y")]}, 400, "not a valid host"),
    ("body-too-big", {"headers": [HOST, (b"content-length", b"1001")]}, 413, "1001 above"),
]


@pytest.mark.parametrize(
    ("kwargs", "status", "reason"), [pytest.param(*case[1:], id=case[0]) for case in REFUSED]
)
def test_refused_heads(kwargs: dict[str, Any], status: int, reason: str) -> None:
    """Each broken rule gets its status and a reason that names it."""
    verdict = check(**kwargs)
    assert verdict.status == status, verdict
    assert reason in verdict.reason, verdict
    assert (verdict.upgrade, verdict.forwarded, verdict.host) == (None, False, None)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="origin-form"),
        pytest.param({"target": b"/a?b=c"}, id="query"),
        pytest.param({"target": b"http://example.com/p"}, id="absolute-form"),
        pytest.param({"target": b"HTTPS://example.com"}, id="absolute-form-upper-case"),
        pytest.param({"method": b"OPTIONS", "target": b"*"}, id="options-star"),
        pytest.param({"version": b"1.0", "headers": []}, id="http-1.0-without-host"),
        pytest.param({"version": b"1.2"}, id="http-1.2"),
        pytest.param({"headers": [HOST, (b"content-length", b"1000")]}, id="body-at-limit"),
        pytest.param({"headers": [HOST, (b"transfer-encoding", b"chunked")]}, id="chunked"),
        pytest.param({"target": b"/" + b"a" * 86}, id="line-at-limit"),  # 100 bytes
    ],
)
def test_passed_heads_share_one_verdict(kwargs: dict[str, Any]) -> None:
    """A head that passes, without news for the driver, is the shared PASSED constant."""
    assert check(**kwargs) is PASSED


def test_a_new_host_is_checked_and_reported_once() -> None:
    """The driver remembers a Host found valid; the next request with it is not re-checked."""
    first = check(headers=[(b"host", b"example.com:8000")], known_host=None)
    assert (first.status, first.host) == (0, b"example.com:8000")
    again = check(headers=[(b"host", b"example.com:8000")], known_host=first.host)
    assert again is PASSED
    for value in (b"[::1]:80", b"", b"127.0.0.1", b"xn--d1acufc.xn--p1ai", b"a%20b"):
        assert check(headers=[(b"host", value)], known_host=None).host == value


def test_upgrade_and_forwarding_headers_are_reported() -> None:
    """Found in the same pass: the Upgrade value, and whether forwarding headers came."""
    verdict = check(headers=[HOST, (b"upgrade", b"websocket")])
    assert (verdict.status, verdict.upgrade, verdict.forwarded) == (0, b"websocket", False)
    for name in (b"forwarded", b"x-forwarded-for", b"x-forwarded-proto"):
        assert check(headers=[HOST, (name, b"v")]).forwarded


def test_check_head_changes_nothing_it_is_given() -> None:
    """Pure: the headers and limits are as they were."""
    headers = [(b"host", b"new.example"), (b"x-forwarded-for", b"10.0.0.1")]
    before = list(headers)
    check(headers=headers, known_host=None)
    assert headers == before


def test_apply_forwarded_returns_new_values() -> None:
    """Client, scheme and server as the proxy says; Host replaced in a new list."""
    trust = ProxyTrust(["127.0.0.1"])
    headers = [
        (b"host", b"internal:8000"),
        (b"x-forwarded-for", b"203.0.113.7"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"shop.example"),
    ]
    before = list(headers)
    result = apply_forwarded(headers, ("127.0.0.1", 5000), "http", trust)
    assert result.client == ("203.0.113.7", 0)
    assert (result.scheme, result.server) == ("https", ("shop.example", 443))
    assert result.headers is not None and (b"host", b"shop.example") in result.headers
    assert (b"host", b"internal:8000") not in result.headers
    assert headers == before
    plain = apply_forwarded([(b"x-forwarded-for", b"203.0.113.7")], ("127.0.0.1", 1), "http", trust)
    assert plain == Forwarded(("203.0.113.7", 0), "http", None, None)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"http://h/p?q", (b"h", b"/p?q")),
        (b"http://h:8080", (b"h:8080", b"/")),
        (b"http://h?q=1", (b"h", b"/?q=1")),
        (b"https://h/a/b", (b"h", b"/a/b")),
        (b"*", (None, b"*")),
    ],
)
def test_split_absolute_form(target: bytes, expected: tuple[bytes | None, bytes]) -> None:
    assert split_absolute_form(target) == expected


def test_with_host_replaces_host_in_place() -> None:
    """RFC 9112 3.2.2: the authority takes the first Host's place; others go."""
    headers = [(b"a", b"1"), (b"host", b"old"), (b"b", b"2"), (b"host", b"older")]
    assert with_host(headers, b"new") == [(b"a", b"1"), (b"host", b"new"), (b"b", b"2")]
    assert with_host([(b"a", b"1")], b"new") == [(b"a", b"1"), (b"host", b"new")]


@pytest.mark.parametrize(
    ("data", "rest"),
    [(b"\r\n\r\nGET", b"GET"), (b"\n\nGET", b"GET"), (b"\rGET", b"\rGET"), (b"\r\n", b"")],
)
def test_skip_blank_lines(data: bytes, rest: bytes) -> None:
    assert skip_blank_lines(data) == rest


def test_small_helpers() -> None:
    assert other_target_ok(b"GET", b"http://x/") and other_target_ok(b"OPTIONS", b"*")
    assert not other_target_ok(b"GET", b"*") and not other_target_ok(b"GET", b"x:1")
    assert accepts_trailers([(b"te", b"Trailers")]) and not accepts_trailers([(b"te", b"gzip")])
    trusted = request_id([(b"x-request-id", b"abc")], trusted=True)
    assert trusted == "abc"
    assert request_id([(b"x-request-id", b"abc")], trusted=False) != "abc"
    assert len(request_id([(b"x-request-id", b"x" * 201)], trusted=True)) == 16
