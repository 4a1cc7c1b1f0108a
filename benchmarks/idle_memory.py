"""Memory per idle keep-alive connection of one server worker (hello ASGI app).

Opens N connections, makes one request on each so each is an idle keep-alive
connection, and divides the worker's memory growth by N. Each repeat starts a
fresh server; the median over repeats is reported.

    python benchmarks/idle_memory.py [--server gunrunner|uvicorn] [--connections 1000] [--tls]

--tls serves HTTPS with a throw-away certificate (trustme, a test extra) and opens TLS
connections: the per-connection cost of OpenSSL's state.
"""

from __future__ import annotations

import argparse
import resource
import select
import shlex
import socket
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchlib import LOOPBACK, BenchError, ServerProcess, free_port, raise_on_sigterm

ASGI_APP = "examples.hello_asgi:app"
KEEPALIVE_SECONDS = 60  # must outlast opening all connections and measuring
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
WARMUP_CONNECTIONS = 10
SOCKET_TIMEOUT = 10.0
MAX_RESPONSE = 64 * 1024


@dataclass
class Memory:
    """KiB summed over the server process and any children it forked."""

    rss: int
    pss: int
    private: int  # Private_Clean + Private_Dirty (USS): what this process alone costs
    processes: int


@dataclass
class Sample:
    before: Memory
    after: Memory
    connections: int
    closed_by_server: int

    def per_conn(self, field: str) -> float:
        return (getattr(self.after, field) - getattr(self.before, field)) / self.connections


def server_argv(kind: str, port: int, extra: list[str]) -> list[str]:
    py = sys.executable
    if kind == "gunrunner":
        argv = [py, "-m", "gunrunner", ASGI_APP, "--bind", f"{LOOPBACK}:{port}",
                "--workers", "1", "--log-level", "warning",
                "--keepalive-timeout", str(KEEPALIVE_SECONDS)]  # fmt: skip
    else:
        argv = [py, "-m", "uvicorn", ASGI_APP, "--http", "h11", "--loop", "asyncio",
                "--workers", "1", "--host", LOOPBACK, "--port", str(port),
                "--log-level", "warning", "--no-access-log",
                "--timeout-keep-alive", str(KEEPALIVE_SECONDS)]  # fmt: skip
    return argv + extra


def raise_nofile(needed: int) -> None:
    """Raise our fd limit before starting the server, which inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise BenchError(f"RLIMIT_NOFILE hard limit {hard} < {needed}; lower --connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


# --- reading memory from /proc ---------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    """Direct children by scanning /proc (works without CONFIG_PROC_CHILDREN)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # Fields after the ")" of the command name: state, ppid, ...
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry.name))
    return kids


def process_tree(pid: int) -> list[int]:
    """pid plus descendants, in case a server forks a worker even with --workers 1."""
    tree, todo = [], [pid]
    while todo and len(tree) < 1000:  # bounded: a server has a handful of processes
        current = todo.pop()
        tree.append(current)
        todo.extend(children_of(current))
    return tree


def read_kib(path: Path, keys: tuple[str, ...]) -> dict[str, int]:
    """`Key:   1234 kB` lines from a /proc file."""
    found = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in keys:
            found[key] = int(rest.split()[0])
    return found


def process_memory(pid: int) -> Memory:
    rollup = Path(f"/proc/{pid}/smaps_rollup")
    try:
        m = read_kib(rollup, ("Rss", "Pss", "Private_Clean", "Private_Dirty"))
        private = m["Private_Clean"] + m["Private_Dirty"]
        return Memory(rss=m["Rss"], pss=m["Pss"], private=private, processes=1)
    except (OSError, KeyError):
        # Older kernels: only VmRSS; use it for all three.
        rss = read_kib(Path(f"/proc/{pid}/status"), ("VmRSS",))["VmRSS"]
        return Memory(rss=rss, pss=rss, private=rss, processes=1)


def tree_memory(pid: int) -> Memory:
    total = Memory(0, 0, 0, 0)
    for member in process_tree(pid):
        try:
            m = process_memory(member)
        except (OSError, KeyError):
            continue  # exited between listing and reading
        total = Memory(
            total.rss + m.rss, total.pss + m.pss, total.private + m.private, total.processes + 1
        )
    return total


# --- client side -----------------------------------------------------------------------------


def read_response(sock: socket.socket) -> int:
    """Read one Content-Length response fully; return its status."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_RESPONSE:
            raise BenchError("response head too large")
        chunk = sock.recv(4096)
        if not chunk:
            raise BenchError("server closed the connection before answering")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    headers = {k.strip().lower(): v.strip().lower() for k, v in headers.items()}
    if "content-length" not in headers:
        raise BenchError(f"response without Content-Length: {headers}")
    if headers.get("connection") == "close":
        raise BenchError("server answered Connection: close; the connection would not stay idle")
    remaining = int(headers["content-length"]) - len(body)
    while remaining > 0:
        chunk = sock.recv(min(remaining, 65536))
        if not chunk:
            raise BenchError("server closed the connection mid-body")
        remaining -= len(chunk)
    return status


def open_idle(
    port: int, count: int, deadline: float, tls: ssl.SSLContext | None = None
) -> list[socket.socket]:
    """count connections, one request each, left open; bounded by deadline."""
    socks: list[socket.socket] = []
    try:
        for i in range(count):
            if time.monotonic() > deadline:
                raise BenchError(f"opened only {i} of {count} connections in time")
            sock = socket.create_connection((LOOPBACK, port), timeout=SOCKET_TIMEOUT)
            if tls is not None:
                try:
                    sock = tls.wrap_socket(sock, server_hostname=LOOPBACK)
                except BaseException:
                    sock.close()
                    raise
            socks.append(sock)
            sock.sendall(REQUEST)
            status = read_response(sock)
            if status != 200:
                raise BenchError(f"connection {i}: status {status}")
    except BaseException:
        close_all(socks)
        raise
    return socks


def count_closed(socks: list[socket.socket]) -> int:
    """Idle sockets become readable only if the server closed them (EOF/reset)."""
    closed = 0
    for start in range(0, len(socks), 500):  # select() is limited to fds < 1024; use poll
        poller = select.poll()
        batch = {s.fileno(): s for s in socks[start : start + 500]}
        for fd in batch:
            poller.register(fd, select.POLLIN)
        for fd, _ in poller.poll(0):
            try:
                # (the plain socket's recv: an SSLSocket refuses MSG_PEEK)
                if socket.socket.recv(batch[fd], 1, socket.MSG_PEEK) == b"":
                    closed += 1
            except OSError:
                closed += 1
    return closed


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


# --- measuring -------------------------------------------------------------------------------


def measure_once(
    kind: str, count: int, settle: float, extra: list[str], tls: ssl.SSLContext | None
) -> Sample:
    """Fresh server: warm up, read memory, open `count` idle connections, read again."""
    port = free_port()
    with ServerProcess(kind, server_argv(kind, port, extra), port) as server:
        server.wait_ready(tls=tls)
        # A few connections first so one-time allocations (imports, caches)
        # are not charged to the measured connections.
        close_all(open_idle(port, WARMUP_CONNECTIONS, time.monotonic() + 30, tls))
        time.sleep(settle)
        before = tree_memory(server.pid)
        deadline = time.monotonic() + KEEPALIVE_SECONDS / 2
        socks = open_idle(port, count, deadline, tls)
        try:
            time.sleep(settle)
            after = tree_memory(server.pid)
            closed = count_closed(socks)
        finally:
            close_all(socks)
        return Sample(before, after, count, closed)


def print_sample(i: int, s: Sample) -> None:
    print(
        f"run {i}: {s.before.processes} process(es); KiB before/after:"
        f" rss {s.before.rss}/{s.after.rss}, pss {s.before.pss}/{s.after.pss},"
        f" private {s.before.private}/{s.after.private};"
        f" per conn: private {s.per_conn('private'):.1f}, rss {s.per_conn('rss'):.1f} KiB"
        + (f"; {s.closed_by_server} closed by server!" if s.closed_by_server else ""),
        flush=True,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--server", choices=("gunrunner", "uvicorn"), default="gunrunner")
    p.add_argument("--connections", type=int, default=1000, help="idle connections to open")
    p.add_argument("--repeat", type=int, default=3, help="fresh-server runs (median reported)")
    p.add_argument("--settle", type=float, default=1.0, help="seconds to wait before reading")
    p.add_argument(
        "--server-args", default="", help="extra server arguments, e.g. '--backlog 4096'"
    )
    p.add_argument("--tls", action="store_true", help="HTTPS (certificate from trustme)")
    args = p.parse_args(argv)
    if args.connections < 1 or args.repeat < 1:
        p.error("--connections and --repeat must be >= 1")
    return args


def make_certificate(directory: Path) -> tuple[ssl.SSLContext, str, str]:
    """A throw-away CA and server certificate; the client context trusts the CA."""
    try:
        import trustme
    except ImportError:
        raise BenchError("--tls needs trustme: pip install -e '.[test]'") from None
    ca = trustme.CA()
    cert = ca.issue_cert(LOOPBACK)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context, str(cert_path), str(key_path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_on_sigterm()
    extra = shlex.split(args.server_args)
    tls: ssl.SSLContext | None = None
    workdir = tempfile.TemporaryDirectory(prefix="idle-memory-tls-")
    if args.tls:
        tls, cert, key = make_certificate(Path(workdir.name))
        if args.server == "gunrunner":
            extra += ["--certfile", cert, "--keyfile", key]
        else:
            extra += ["--ssl-certfile", cert, "--ssl-keyfile", key]
    try:
        raise_nofile(args.connections + WARMUP_CONNECTIONS + 256)
        samples = []
        for i in range(1, args.repeat + 1):
            samples.append(measure_once(args.server, args.connections, args.settle, extra, tls))
            print_sample(i, samples[-1])
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        workdir.cleanup()
    print(
        f"\n{args.server}: {args.connections} idle keep-alive"
        f" {'TLS ' if args.tls else ''}connections, median of"
        f" {len(samples)} runs:"
    )
    for field in ("private", "pss", "rss"):
        per_conn = statistics.median(s.per_conn(field) for s in samples)
        print(f"  {field:<8} {per_conn:6.1f} KiB per connection")
    closed = sum(s.closed_by_server for s in samples)
    if closed:
        print(f"  warning: the server closed {closed} connections before the reading")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        # The `with ServerProcess` blocks have already stopped the servers.
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
