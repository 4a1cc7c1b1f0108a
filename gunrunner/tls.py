"""TLS: the server's SSLContext built from the options, and what a connection reports.

Every worker builds its own context when it starts (and the CLI and a HUP build one
first, to check the options), so the workers a HUP starts read the certificate files
again: a renewed certificate needs no restart.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Any

from gunrunner.config import Options
from gunrunner.errors import ConfigError

_MIN_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
# SSLObject.version() names -> the protocol version numbers of the TLS RFCs.
_WIRE_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
# Attribute names getpeercert() uses -> the short names of RFC 4514.
_RDN_NAMES = {
    "commonName": "CN",
    "countryName": "C",
    "domainComponent": "DC",
    "localityName": "L",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "stateOrProvinceName": "ST",
    "streetAddress": "STREET",
    "userId": "UID",
}


@dataclass(frozen=True, slots=True)
class TLSServer:
    """A worker's TLS context and the per-server parts of the ASGI `tls` extension."""

    context: ssl.SSLContext
    server_cert: str | None  # PEM of the certificate we present
    cipher_ids: dict[str, int] = field(default_factory=dict)  # OpenSSL name -> IANA id

    def connection_info(self, ssl_object: Any) -> dict[str, Any]:
        """The ASGI `tls` extension for one connection (asgiref specs/tls.rst)."""
        chain: tuple[str, ...] = ()
        name: str | None = None
        leaf = ssl_object.getpeercert(binary_form=True)
        if leaf:
            # The chain the client sent (Python >= 3.13 can tell), else its certificate.
            sent = getattr(ssl_object, "get_unverified_chain", None)
            ders = sent() if sent is not None else [leaf]
            chain = tuple(ssl.DER_cert_to_PEM_cert(bytes(der)) for der in ders)
            name = rfc4514_name(ssl_object.getpeercert().get("subject", ()))
        cipher = ssl_object.cipher()
        return {
            "server_cert": self.server_cert,
            "client_cert_chain": chain,
            "client_cert_name": name,
            # A certificate that fails the check fails the handshake: no error to report.
            "client_cert_error": None,
            "tls_version": _WIRE_VERSIONS.get(ssl_object.version() or ""),
            "cipher_suite": self.cipher_ids.get(cipher[0]) if cipher else None,
        }


TLS_READ_BUFFER = 32 * 1024


def shrink_asyncio_tls_buffer() -> None:
    """asyncio gives each TLS connection a read buffer of SSLProtocol.max_size, 256 KiB:
    277 KiB per idle connection, measured (benchmarks/idle_memory.py --tls). A TLS record
    is at most 16 KiB plus overhead, so 32 KiB reads whole records. Process-wide, so
    only for a serving process; private asyncio API, hence the getattr guards."""
    sslproto = getattr(asyncio, "sslproto", None)
    protocol = getattr(sslproto, "SSLProtocol", None)
    if getattr(protocol, "max_size", 0) > TLS_READ_BUFFER:
        protocol.max_size = TLS_READ_BUFFER  # type: ignore[union-attr]


def rfc4514_name(subject: Any) -> str:
    """A certificate subject (getpeercert()'s form) as an RFC 4514 string."""
    rdns = []
    for rdn in reversed(subject):  # RFC 4514 writes the last RDN first
        rdns.append(
            "+".join(f"{_RDN_NAMES.get(key, key)}={_escape_rdn(value)}" for key, value in rdn)
        )
    return ",".join(rdns)


def _escape_rdn(value: str) -> str:
    out = []
    for i, char in enumerate(value):
        if char in ',+"\\<>;' or (i == 0 and char in "# ") or (i == len(value) - 1 and char == " "):
            out.append("\\" + char)
        elif char == "\0":
            out.append("\\00")
        else:
            out.append(char)
    return "".join(out)


def _tls_options_set(options: Options) -> list[str]:
    """The names of the TLS options that are set to something other than their default."""
    names = ("keyfile", "keyfile_password", "ca_certs", "ciphers")
    found = [name for name in names if getattr(options, name)]
    if options.cert_reqs != "none":
        found.append("cert_reqs")
    return found


def build_tls(options: Options) -> TLSServer | None:
    """The TLS server for these options, or None for plain HTTP; ConfigError if unusable."""
    if not options.certfile:
        stray = _tls_options_set(options)
        if stray:
            raise ConfigError(
                f"{', '.join(stray)} set but certfile is not: set certfile to serve HTTPS",
                key=stray[0],
            )
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _MIN_VERSIONS[options.tls_min_version]
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    _load_chain(context, options)
    if options.ca_certs:
        try:
            context.load_verify_locations(cafile=options.ca_certs)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"ca_certs: cannot load {options.ca_certs}: {_reason(exc)} "
                "(expected a PEM file of CA certificates)",
                key="ca_certs",
            ) from None
    if options.cert_reqs != "none" and not options.ca_certs:
        raise ConfigError(
            f'cert_reqs = "{options.cert_reqs}" needs ca_certs: the CAs client '
            "certificates are checked against",
            key="cert_reqs",
        )
    context.verify_mode = _CERT_REQS[options.cert_reqs]
    if options.ciphers:
        try:
            context.set_ciphers(options.ciphers)
        except ssl.SSLError:
            raise ConfigError(
                f"ciphers: OpenSSL knows no cipher in {options.ciphers!r} "
                "(expected an OpenSSL cipher list such as 'ECDHE+AESGCM')",
                key="ciphers",
            ) from None
    context.set_alpn_protocols(["http/1.1"])
    cipher_ids = {c["name"]: c["id"] & 0xFFFF for c in context.get_ciphers()}
    return TLSServer(context, _first_pem_cert(options.certfile), cipher_ids)


def _load_chain(context: ssl.SSLContext, options: Options) -> None:
    certfile = options.certfile
    assert certfile is not None
    for key, path in (("certfile", certfile), ("keyfile", options.keyfile)):
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}", key=key) from None
    try:
        context.load_cert_chain(
            certfile, options.keyfile or None, password=_password(options.keyfile_password)
        )
    except ssl.SSLError as exc:
        key_source = options.keyfile or certfile
        raise ConfigError(
            f"certfile/keyfile: cannot use {certfile} with the key in {key_source}: "
            f"{_reason(exc)} (expected PEM files whose key matches the certificate; an "
            "encrypted key needs keyfile_password)",
            key="keyfile" if options.keyfile else "certfile",
        ) from None


def _password(password: str | None) -> Any:
    if password is None:
        # A callable, so that OpenSSL never stops to ask on the terminal for an
        # encrypted key: it gets no password and load_cert_chain fails instead.
        return lambda: b""
    return password


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    if reason:
        return str(reason).replace("_", " ").lower()
    return getattr(exc, "strerror", None) or str(exc)


def _first_pem_cert(path: str) -> str | None:
    """The first certificate of a PEM file: the one the server presents."""
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    start = text.find(begin)
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        return None
    return text[start : stop + len(end)] + "\n"
