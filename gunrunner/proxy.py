"""Behind a proxy: take the client address, scheme and host from trusted proxies' headers.

Rules:
1. Only a peer in `forwarded_allow_ips` (addresses or networks; "*" for any; Unix-socket
   peers are local and trusted) is believed; from anyone else these headers are ignored.
2. RFC 7239 `Forwarded` wins over the `X-Forwarded-*` headers when both are present.
3. The client is found by walking the address list from the right (the hop our proxy
   added) past every trusted proxy: the first untrusted address is the client. A client
   cannot spoof its address by sending its own X-Forwarded-For, because the entries it
   wrote stand left of the one our proxy appended.
Knows headers and addresses, nothing of sockets or apps.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from gunrunner.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_SCHEMES = {"http", "https", "ws", "wss"}


class ProxyTrust:
    """Which peers may tell us who the client is."""

    def __init__(self, allowed: Sequence[str]) -> None:
        self.any = "*" in allowed
        self.networks: list[Network] = []
        for entry in allowed:
            if entry == "*":
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ConfigError(
                    f'forwarded_allow_ips: "{entry}" is not an IP address or network '
                    '(e.g. 10.0.0.0/8, ::1, or "*")',
                    key="forwarded_allow_ips",
                ) from None

    def trusts(self, host: str | None) -> bool:
        """True for a trusted peer address; None stands for a Unix-socket peer."""
        if host is None or self.any:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def resolve(
        self,
        headers: list[tuple[bytes, bytes]],
        client: tuple[str, int] | None,
        scheme: str,
    ) -> tuple[tuple[str, int] | None, str, str | None]:
        """(client, scheme, host) after the forwarding headers of a trusted peer."""
        forwarded: list[bytes] = []
        xff: list[bytes] = []
        proto = host = None
        for name, value in headers:
            if name == b"forwarded":
                forwarded.append(value)
            elif name == b"x-forwarded-for":
                xff.append(value)
            elif name == b"x-forwarded-proto":
                proto = value
            elif name == b"x-forwarded-host":
                host = value
        if forwarded:
            hops = _parse_forwarded(b",".join(forwarded).decode("latin-1"))
            fors = [hop.get("for", "") for hop in hops]
            index = self._client_index(fors)
            if index is not None:
                hop = hops[index]
                client = (_strip_port(fors[index]), 0) if fors[index] else client
                scheme = hop.get("proto", scheme).lower()
                host_text = hop.get("host")
                return client, _checked_scheme(scheme), host_text
            return client, scheme, None
        if xff:
            chain = [a.strip() for a in b",".join(xff).decode("latin-1").split(",")]
            index = self._client_index(chain)
            if index is not None and chain[index]:
                client = (_strip_port(chain[index]), 0)
        if proto is not None:
            last = proto.decode("latin-1").split(",")[-1].strip().lower()
            scheme = _checked_scheme(last) if last in _SCHEMES else scheme
        host_text = host.decode("latin-1").split(",")[-1].strip() if host else None
        return client, scheme, host_text or None

    def _client_index(self, chain: list[str]) -> int | None:
        """Index of the first untrusted hop from the right (or the leftmost hop)."""
        if not chain:
            return None
        for index in range(len(chain) - 1, -1, -1):
            if not self.trusts(_strip_port(chain[index]) or "") or index == 0:
                return index
        return 0


def _checked_scheme(scheme: str) -> str:
    return scheme if scheme in _SCHEMES else "http"


def _strip_port(value: str) -> str:
    """The address of `for=`/X-Forwarded-For entries: 1.2.3.4:5, [::1]:5, "_hidden"."""
    value = value.strip().strip('"')
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def _parse_forwarded(text: str) -> list[dict[str, str]]:
    """RFC 7239: comma-separated hops of semicolon-separated key=value (quoted) pairs."""
    hops: list[dict[str, str]] = []
    for element in _split_outside_quotes(text, ","):
        hop: dict[str, str] = {}
        for pair in _split_outside_quotes(element, ";"):
            key, sep, value = pair.partition("=")
            if sep:
                hop[key.strip().lower()] = value.strip().strip('"')
        hops.append(hop)
    return hops


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in (part.strip() for part in parts) if p]
