"""Forwarding headers: only trusted peers, Forwarded over X-Forwarded-*, no spoofing."""

from __future__ import annotations

import pytest

from gunrunner.errors import ConfigError
from gunrunner.proxy import ProxyTrust

CLIENT = ("127.0.0.1", 5000)


def resolve(trust: ProxyTrust, *headers: tuple[str, str]):  # type: ignore[no-untyped-def]
    encoded = [(n.lower().encode(), v.encode()) for n, v in headers]
    return trust.resolve(encoded, CLIENT, "http")


def test_trust_by_address_network_star_and_unix() -> None:
    """Addresses, networks and "*" are trusted as configured; Unix peers always."""
    trust = ProxyTrust(["127.0.0.1", "10.0.0.0/8", "::1"])
    assert trust.trusts("127.0.0.1") and trust.trusts("10.2.3.4") and trust.trusts("::1")
    assert not trust.trusts("192.0.2.1")
    assert not trust.trusts("not-an-ip")
    assert trust.trusts(None)
    assert ProxyTrust(["*"]).trusts("192.0.2.1")


def test_bad_entry_is_a_config_error() -> None:
    """A value that is not an address or network names the option."""
    with pytest.raises(ConfigError, match=r'forwarded_allow_ips: "example\.com"'):
        ProxyTrust(["example.com"])


def test_x_forwarded_headers() -> None:
    """X-Forwarded-For/-Proto/-Host set client, scheme and host."""
    trust = ProxyTrust(["127.0.0.1"])
    client, scheme, host = resolve(
        trust,
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "example.com"),
    )
    assert client == ("203.0.113.7", 0) and scheme == "https" and host == "example.com"


def test_spoofed_x_forwarded_for_is_not_believed() -> None:
    """A client's own X-Forwarded-For entry stands left of the one our proxy appended."""
    trust = ProxyTrust(["127.0.0.1", "10.0.0.0/8"])
    client, _, _ = resolve(trust, ("X-Forwarded-For", "1.1.1.1, 198.51.100.9, 10.0.0.5"))
    assert client == ("198.51.100.9", 0)  # 10.0.0.5 is a trusted hop; 1.1.1.1 is made up


def test_forwarded_wins_and_handles_quotes_and_ports() -> None:
    """RFC 7239 Forwarded takes precedence; IPv6 in quotes and ports are understood."""
    trust = ProxyTrust(["127.0.0.1"])
    client, scheme, host = resolve(
        trust,
        ("X-Forwarded-For", "192.0.2.50"),
        ("Forwarded", 'for="[2001:db8::1]:4711";proto=https;host="shop.example"'),
    )
    assert client == ("2001:db8::1", 0) and scheme == "https" and host == "shop.example"


def test_unknown_scheme_is_ignored() -> None:
    """An X-Forwarded-Proto that is not http(s)/ws(s) does not change the scheme."""
    _, scheme, _ = resolve(ProxyTrust(["127.0.0.1"]), ("X-Forwarded-Proto", "gopher"))
    assert scheme == "http"
