"""HTTPS: certificates from trustme, real TLS clients (ssl, httpx, websockets).

What a TLS listener must do: serve https with the right scheme and the ASGI `tls`
extension, check client certificates, refuse what the options refuse, close plain HTTP
sent to it quietly, and pick up renewed certificates on HUP.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from websockets.asyncio.client import connect

from tests.helpers import REPO, Server, running, start, wait_until

pytestmark = pytest.mark.usefixtures("http_driver")  # every server: h11, then httptools

WSGI = "tests.apps.http_apps:wsgi_app"
ASGI = "tests.apps.http_apps:asgi_app"
BOTH = pytest.mark.parametrize("app", [WSGI, ASGI], ids=["wsgi", "asgi"])
WIRE_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


@dataclass
class Certs:
    ca: trustme.CA
    ca_file: Path
    cert_file: Path  # the server certificate (chain)
    key_file: Path
    client_file: Path  # a client certificate with its key, issued by `ca`
    client_cert: trustme.LeafCert
    directory: Path

    def server_args(self, *extra: str) -> tuple[str, ...]:
        return ("--certfile", str(self.cert_file), "--keyfile", str(self.key_file), *extra)

    def client_context(self, with_cert: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if with_cert:
            context.load_cert_chain(str(self.client_file))
        return context


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("alice@example.com", common_name="Alice, Inc.")
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    server.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    server.private_key_pem.write_to_path(str(directory / "key.pem"))
    client.private_key_and_cert_chain_pem.write_to_path(str(directory / "client.pem"))
    return Certs(
        ca,
        directory / "ca.pem",
        directory / "cert.pem",
        directory / "key.pem",
        directory / "client.pem",
        client,
        directory,
    )


def get(server: Server, path: str, context: ssl.SSLContext, **kwargs: Any) -> httpx.Response:
    with httpx.Client(verify=context, timeout=10) as client:
        return client.get(f"https://{server.host}:{server.port}{path}", **kwargs)


def tls_socket(server: Server, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection((server.host, server.port), timeout=10)
    try:
        return context.wrap_socket(raw, server_hostname=server.host)
    except BaseException:
        raw.close()
        raise


def peer_cert_pem(server: Server, context: ssl.SSLContext) -> str:
    with tls_socket(server, context) as sock:
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    return ssl.DER_cert_to_PEM_cert(der)


def subject_rfc4514(leaf: trustme.LeafCert) -> str:
    """The subject as cryptography writes RFC 4514: what the tls extension must say."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    return cert.subject.rfc4514_string()


def run_gunrunner(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gunrunner", *args],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )


# -- serving ---------------------------------------------------------------------------------


@BOTH
def test_https_request_has_scheme_https(certs: Certs, app: str) -> None:
    with running(app, *certs.server_args()) as server:
        path = "/environ" if app == WSGI else "/scope"
        reply = get(server, path, certs.client_context())
        assert reply.status_code == 200
        seen = reply.json()
        assert seen.get("wsgi.url_scheme", seen.get("scheme")) == "https"
        assert reply.http_version == "HTTP/1.1"


@BOTH
def test_tls_extension_describes_the_connection(certs: Certs, app: str) -> None:
    with (
        running(app, *certs.server_args()) as server,
        tls_socket(server, certs.client_context()) as sock,
    ):
        sock.sendall(b"GET /tls HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        tls = json.loads(body)
        assert tls["server_cert"] == certs.cert_file.read_text()
        assert tls["client_cert_chain"] == []
        assert tls["client_cert_name"] is None
        assert tls["client_cert_error"] is None
        assert tls["tls_version"] == WIRE_VERSIONS[sock.version() or ""]
        name = sock.cipher()[0]  # type: ignore[index]
        ids = {c["name"]: c["id"] & 0xFFFF for c in certs.client_context().get_ciphers()}
        assert tls["cipher_suite"] == ids[name]


def test_plain_http_gets_no_tls_extension() -> None:
    with running(ASGI) as server:
        reply = httpx.get(f"{server.url}/tls", timeout=10)
        assert reply.json() is None
        assert "tls" not in httpx.get(f"{server.url}/scope", timeout=10).json()["extensions"]


def test_alpn_selects_http11(certs: Certs) -> None:
    context = certs.client_context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    with running(ASGI, *certs.server_args()) as server, tls_socket(server, context) as sock:
        assert sock.selected_alpn_protocol() == "http/1.1"


def test_key_and_certificate_in_one_file(certs: Certs, tmp_path: Path) -> None:
    combined = tmp_path / "combined.pem"
    combined.write_text(certs.key_file.read_text() + certs.cert_file.read_text())
    with running(WSGI, "--certfile", str(combined)) as server:
        assert get(server, "/hello", certs.client_context()).status_code == 200


def test_encrypted_key_with_password(certs: Certs, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(certs.key_file.read_bytes(), password=None)
    encrypted = tmp_path / "key.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    args = ("--certfile", str(certs.cert_file), "--keyfile", str(encrypted))
    with running(WSGI, *args, env={"GUNRUNNER_KEYFILE_PASSWORD": "s3cret"}) as server:
        assert get(server, "/hello", certs.client_context()).status_code == 200
    wrong = run_gunrunner(WSGI, *args, "--keyfile-password", "nope", "--check-config")
    assert wrong.returncode == 2, wrong.stderr
    assert "keyfile" in wrong.stderr and str(encrypted) in wrong.stderr
    missing = run_gunrunner(WSGI, *args, "--check-config")
    assert missing.returncode == 2, missing.stderr
    assert "keyfile_password" in missing.stderr
    printed = run_gunrunner(WSGI, *args, "--keyfile-password", "s3cret", "--print-config").stdout
    assert "s3cret" not in printed
    assert "# keyfile_password is set (not shown)" in printed


# -- client certificates ---------------------------------------------------------------------


def test_required_client_certificate(certs: Certs) -> None:
    args = certs.server_args("--ca-certs", str(certs.ca_file), "--cert-reqs", "required")
    with running(ASGI, *args) as server:
        reply = get(server, "/tls", certs.client_context(with_cert=True))
        tls = reply.json()
        assert tls["client_cert_chain"][0] == certs.client_cert.cert_chain_pems[0].bytes().decode()
        assert tls["client_cert_name"] == subject_rfc4514(certs.client_cert)
        assert tls["client_cert_name"].startswith(r"CN=Alice\, Inc.,")
        # Without a certificate the handshake fails (TLS 1.3 reports it on first read).
        with pytest.raises((ssl.SSLError, httpx.TransportError)):
            get(server, "/tls", certs.client_context())
        assert get(server, "/hello", certs.client_context(with_cert=True)).status_code == 200


def test_optional_client_certificate(certs: Certs) -> None:
    args = certs.server_args("--ca-certs", str(certs.ca_file), "--cert-reqs", "optional")
    with running(WSGI, *args) as server:
        assert get(server, "/tls", certs.client_context()).json()["client_cert_name"] is None
        named = get(server, "/tls", certs.client_context(with_cert=True)).json()
        assert named["client_cert_name"] == subject_rfc4514(certs.client_cert)


def test_client_certificate_from_another_ca_is_refused(certs: Certs, tmp_path: Path) -> None:
    other = trustme.CA().issue_cert("mallory@example.com")
    other.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "mallory.pem"))
    context = certs.client_context()
    context.load_cert_chain(str(tmp_path / "mallory.pem"))
    args = certs.server_args("--ca-certs", str(certs.ca_file), "--cert-reqs", "optional")
    with running(ASGI, *args, "--log-level", "debug") as server:
        with pytest.raises((ssl.SSLError, httpx.TransportError)):
            get(server, "/tls", context)
        server.wait_for(r"DEBUG .*TLS handshake failed \(peer 127\.0\.0\.1:\d+\)")
        assert get(server, "/hello", certs.client_context()).status_code == 200


# -- versions and ciphers --------------------------------------------------------------------


def test_tls_min_version(certs: Certs) -> None:
    old_client = certs.client_context()
    old_client.maximum_version = ssl.TLSVersion.TLSv1_2
    with running(WSGI, *certs.server_args()) as server, tls_socket(server, old_client) as sock:
        assert sock.version() == "TLSv1.2"  # the default minimum is 1.2
    with running(WSGI, *certs.server_args("--tls-min-version", "1.3")) as server:
        with pytest.raises(ssl.SSLError):
            tls_socket(server, old_client).close()
        with tls_socket(server, certs.client_context()) as sock:
            assert sock.version() == "TLSv1.3"


def test_ciphers_option_limits_tls12_suites(certs: Certs) -> None:
    client = certs.client_context()
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    args = certs.server_args("--ciphers", "ECDHE+CHACHA20")
    with running(WSGI, *args) as server, tls_socket(server, client) as sock:
        assert "CHACHA20" in sock.cipher()[0]  # type: ignore[index]


# -- wrong protocol on the wrong port ------------------------------------------------------------


def test_plain_http_on_tls_port_is_closed_quietly(certs: Certs) -> None:
    with running(WSGI, *certs.server_args(), "--workers", "2", ready=2) as server:
        before = sorted(server.workers())
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                answer = sock.recv(1024)
            except ConnectionResetError:
                answer = b""
            assert not answer.startswith(b"HTTP/")
        assert get(server, "/hello", certs.client_context()).status_code == 200
        assert sorted(server.workers()) == before
        assert "Traceback" not in server.log()
        assert " ERROR " not in server.log()


def test_tls_hello_on_plain_port_is_closed_quietly(certs: Certs) -> None:
    # A real ClientHello, made by the ssl module into memory.
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = certs.client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16"
    with running(ASGI, "--log-level", "debug") as server:
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(hello)
            assert sock.recv(1024) == b""  # closed at once, not after header_timeout
        server.wait_for("TLS handshake on a plain-HTTP port")
        assert httpx.get(f"{server.url}/hello", timeout=10).status_code == 200


def test_silent_tls_client_times_out(certs: Certs) -> None:
    with (
        running(WSGI, *certs.server_args("--header-timeout", "1")) as server,
        socket.create_connection((server.host, server.port), timeout=10) as sock,
    ):
        sock.sendall(b"\x16\x03\x01")  # the start of a record, then nothing
        assert wait_until(lambda: _closed(sock), timeout=5)


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


# -- WebSockets over TLS -----------------------------------------------------------------------


def test_wss_scope(certs: Certs) -> None:
    async def scope() -> dict[str, Any]:
        url = f"wss://{server.host}:{server.port}/scope/x"
        async with connect(url, ssl=certs.client_context(), open_timeout=10) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    with running("tests.apps.ws_apps:app", *certs.server_args()) as server:
        shown = asyncio.run(scope())
    assert shown["scheme"] == "wss"
    assert shown["extensions"]["tls"]["server_cert"] == certs.cert_file.read_text()


# -- configuration errors, and renewal on HUP --------------------------------------------------


@pytest.mark.parametrize(
    ("args", "key", "says"),
    [
        (("--certfile", "/nonexistent/cert.pem"), "certfile", "/nonexistent/cert.pem"),
        (("--keyfile", "{key}"), "keyfile", "certfile is not"),
        (("--certfile", "{cert}", "--keyfile", "{ca}"), "keyfile", "key"),
        (
            ("--certfile", "{cert}", "--keyfile", "{key}", "--cert-reqs", "required"),
            "cert_reqs",
            "needs ca_certs",
        ),
        (
            ("--certfile", "{cert}", "--keyfile", "{key}", "--ciphers", "NOPE-NOPE"),
            "ciphers",
            "NOPE-NOPE",
        ),
        (
            ("--certfile", "{cert}", "--keyfile", "{key}", "--ca-certs", "{key}"),
            "ca_certs",
            "ca_certs",
        ),
    ],
    ids=[
        "missing-cert",
        "key-without-cert",
        "mismatched-key",
        "reqs-without-ca",
        "bad-ciphers",
        "bad-ca",
    ],
)
def test_bad_tls_config_exits_2_naming_the_key(
    certs: Certs, args: tuple[str, ...], key: str, says: str
) -> None:
    files = {"cert": certs.cert_file, "key": certs.key_file, "ca": certs.ca_file}
    filled = [a.format(**files) for a in args]
    result = run_gunrunner(WSGI, *filled, "--bind", "127.0.0.1:0")
    assert result.returncode == 2, result.stderr
    assert key in result.stderr and says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_hup_rereads_certificates(certs: Certs, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    first = certs.ca.issue_cert("127.0.0.1")
    first.cert_chain_pems[0].write_to_path(str(cert))
    first.private_key_pem.write_to_path(str(key))
    context = certs.client_context()
    server = start(WSGI, "--certfile", str(cert), "--keyfile", str(key), "--workers", "2", ready=2)
    try:
        assert peer_cert_pem(server, context) == first.cert_chain_pems[0].bytes().decode()
        # A broken renewal is refused; the running workers keep the old certificate.
        cert.write_text("not a certificate\n")
        server.send_signal(signal.SIGHUP)
        server.wait_for(
            r"config error: command line: certfile/keyfile: cannot use .*keeping the running"
        )
        assert peer_cert_pem(server, context) == first.cert_chain_pems[0].bytes().decode()
        # A good renewal is served by the new workers.
        second = certs.ca.issue_cert("127.0.0.1")
        second.cert_chain_pems[0].write_to_path(str(cert))
        second.private_key_pem.write_to_path(str(key))
        server.send_signal(signal.SIGHUP)
        server.wait_for("restart complete")
        renewed = second.cert_chain_pems[0].bytes().decode()
        assert wait_until(lambda: peer_cert_pem(server, context) == renewed, timeout=10)
        for _ in range(10):  # every worker serves the new one
            assert peer_cert_pem(server, context) == renewed
    finally:
        server.stop()


def test_respawn_without_its_certificate_keeps_the_others_serving(
    certs: Certs, tmp_path: Path
) -> None:
    """A worker that dies while the certificate file is gone cannot boot: the arbiter says
    why, the other worker serves on, and the slot comes back once the file does."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(certs.cert_file.read_bytes())
    key.write_bytes(certs.key_file.read_bytes())
    context = certs.client_context()
    server = start(WSGI, "--certfile", str(cert), "--keyfile", str(key), "--workers", "2", ready=2)
    try:
        victim, survivor = server.workers()
        cert.rename(tmp_path / "moved.pem")
        os.kill(victim, signal.SIGKILL)
        server.wait_for(r"could not boot; 1 other worker\(s\) serve on.*\n.*certfile")
        for _ in range(5):
            assert get(server, "/hello", context).status_code == 200
        assert server.proc.poll() is None
        (tmp_path / "moved.pem").rename(cert)
        assert wait_until(
            lambda: len(server.workers()) == 2 and survivor in server.workers(), timeout=15
        )
        server.wait_for(r"worker \d+ \(slot 0\) ready", count=2)  # first boot, then again
        for _ in range(10):
            assert get(server, "/hello", context).status_code == 200
    finally:
        server.stop()
