"""Every option, declared once: the `Options` table and how each option is named.

An option is one field of `Options`. Its name is the TOML key, `--name-with-dashes` is
its flag and `GUNRUNNER_NAME` its environment variable. Help, kind, default and check live
beside it (an `OptionSpec`, see _kinds.py; `spec_of(name)` reads it); the CLI, the
loader (config.py), `--print-config` and the docs read this table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from gunrunner._kinds import (
    BOOL,
    FLOAT,
    INT,
    MODE,
    OPTIONAL_MODE,
    OPTIONAL_STR,
    SPEC,
    STR,
    STR_LIST,
    WORKERS,
    Kind,
    OptionSpec,
    option,
)

ENV_PREFIX = "GUNRUNNER_"
# Environment variables with this prefix that are not options.
ENV_NOT_OPTIONS = frozenset({"GUNRUNNER_CONFIG", "GUNRUNNER_TEST_FAIL_FORKS"})


@dataclass(frozen=True, kw_only=True, slots=True)
class Options:
    """The effective configuration of one gunrunner instance."""

    app: str | None = option(
        None,
        example="myproject.wsgi:application",
        kind=OPTIONAL_STR,
        metavar="MODULE:ATTR",
        help="The application, as module:attribute (e.g. myproject.wsgi:application).",
    )
    bind: tuple[str, ...] = option(
        ("127.0.0.1:8000",),
        kind=STR_LIST,
        minimum=1,
        short="-b",
        metavar="ADDRESS",
        help="Address to listen on: HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N. "
        "Repeat for several; a name binds every address it resolves to; port 0 picks one "
        "free port for all workers.",
    )
    workers: int | str = option(
        1,
        kind=WORKERS,
        short="-w",
        minimum=0,
        help='Worker processes; 0 or 1 serves in the main process without forking; "auto" '
        "uses the CPUs this process may really use (affinity and cgroup quota).",
    )
    threads: int = option(
        8,
        kind=INT,
        minimum=1,
        help="Threads per worker that run WSGI apps (ASGI apps run on the event loop). "
        "A WSGI app blocked on I/O holds one; 8 keeps hello-world speed and serves 8 "
        "blocking calls at once (see README, Performance).",
    )
    interface: str = option(
        "auto",
        kind=STR,
        choices=("auto", "wsgi", "asgi", "asgi2"),
        help="The app's interface; auto detects it from the callable's signature.",
    )
    factory: bool = option(
        False,
        kind=BOOL,
        help="Treat module:attribute as a factory: call it with no arguments to get the app.",
    )
    app_dir: str = option(
        ".",
        kind=STR,
        metavar="DIR",
        help="Directory put first on sys.path before the app is imported.",
    )
    lifespan: str = option(
        "auto",
        kind=STR,
        choices=("auto", "on", "off"),
        help="ASGI lifespan protocol: auto runs it and carries on if the app does not "
        "support it; on makes a failure fatal; off skips it.",
    )
    loop: str = option(
        "auto",
        kind=STR,
        choices=("auto", "asyncio", "uvloop"),
        help="Event loop: auto takes uvloop when it is installed.",
    )
    http: str = option(
        "auto",
        kind=STR,
        choices=("auto", "h11", "httptools"),
        help="HTTP/1.1 parser: h11 (pure Python, the reference for behaviour) or httptools "
        "(llhttp, faster). auto takes httptools when it is installed (pip install "
        "'gunrunner[fast]') and h11 otherwise.",
    )
    backlog: int = option(
        2048,
        kind=INT,
        minimum=1,
        help="Listen queue length of each listening socket (connections not yet accepted).",
    )
    reuse_port: bool = option(
        True,
        kind=BOOL,
        help="Give every worker its own SO_REUSEPORT listening socket, balanced by the "
        "kernel; off (or where the OS cannot balance) all workers share one socket.",
    )
    shared_bind: bool = option(
        False,
        kind=BOOL,
        help="Start even when another gunrunner of this user already listens on the "
        "address, and share the port with it (zero-downtime deploy: start the new one, "
        "then TERM the old one).",
    )
    unix_socket_mode: int = option(
        0o660,
        kind=MODE,
        metavar="MODE",
        help="Permissions of a unix:PATH socket, set before it accepts connections: the "
        "default lets the owner and the group connect (put the proxy's user in this "
        'user\'s group), "666" lets every local user.',
    )
    umask: int | None = option(
        None,
        kind=OPTIONAL_MODE,
        metavar="MASK",
        example=0o027,
        help="Process umask (octal, like gunicorn's), set at start before any file is "
        "created: log and pid files, files the app writes. Not set: the umask gunrunner "
        "was started with.",
    )
    user: str | None = option(
        None,
        example="www-data",
        kind=OPTIONAL_STR,
        metavar="USER",
        help="Run as this user (name or uid): gunrunner binds and opens its files as "
        "root, then drops to it before any worker starts. Needs root to start.",
    )
    group: str | None = option(
        None,
        example="www-data",
        kind=OPTIONAL_STR,
        metavar="GROUP",
        help="Run with this group (name or gid); default: the user's primary group.",
    )
    timeout: float = option(
        30.0,
        kind=FLOAT,
        minimum=0,
        help="Seconds a worker's event loop may stay silent before the worker is killed "
        "and replaced; 0 disables the check.",
    )
    graceful_timeout: float = option(
        30.0,
        kind=FLOAT,
        minimum=0,
        help="Seconds a stopping worker gets to finish in-flight requests before it is killed.",
    )
    max_requests: int = option(
        0,
        kind=INT,
        minimum=0,
        example=10000,
        help="Replace a worker after it has answered this many requests (0: never); the "
        "new worker starts first and the old one drains, so nothing is lost. With any "
        "recycling limit set, workers = 1 runs one worker under the arbiter too.",
    )
    max_requests_jitter: int = option(
        0,
        kind=INT,
        minimum=0,
        example=1000,
        help="Up to this many requests added at random to each worker's max_requests, so "
        "workers started together do not all recycle at once.",
    )
    max_worker_lifetime: float = option(
        0.0,
        kind=FLOAT,
        minimum=0,
        example=86400.0,
        help="Seconds after which a worker is replaced, new before old (0: never).",
    )
    max_worker_lifetime_jitter: float = option(
        0.0,
        kind=FLOAT,
        minimum=0,
        example=3600.0,
        help="Up to this many seconds added at random to each worker's max_worker_lifetime.",
    )
    max_worker_memory: int = option(
        0,
        kind=INT,
        minimum=0,
        metavar="MIB",
        example=512,
        help="Replace a worker whose own memory (USS: the pages no other process shares, "
        "from /proc) passes this many MiB (0: never). Checked by the arbiter every few "
        "seconds, off the request path.",
    )
    min_worker_lifetime: float = option(
        10.0,
        kind=FLOAT,
        minimum=0,
        help="Seconds a worker serves before any recycling limit may replace it, so an app "
        "that leaks fast is recycled at this pace, not in a restart storm.",
    )
    keepalive_timeout: float = option(
        5.0,
        kind=FLOAT,
        minimum=0,
        help="Seconds an idle keep-alive connection is kept open.",
    )
    header_timeout: float = option(
        10.0,
        kind=FLOAT,
        minimum=0.1,
        help="Seconds a request head (request line and headers) may take to arrive, from "
        "its first byte or from the connection's start; slower gets 408 and a close "
        "(slowloris).",
    )
    body_timeout: float = option(
        60.0,
        kind=FLOAT,
        minimum=0.1,
        help="Seconds the app may wait for the next piece of a request body; a client that "
        "stops sending mid-body gets 408 (or a close, once the response started) and the "
        "app a disconnect, instead of holding a worker thread forever.",
    )
    send_timeout: float = option(
        60.0,
        kind=FLOAT,
        minimum=0.1,
        help="Seconds a response may wait for a client that does not read it (its buffers "
        "full) before the connection is dropped; frees the app and its WSGI thread.",
    )
    limit_request_line: int = option(
        8190,
        kind=INT,
        minimum=64,
        help="Longest request line in bytes (method, target, version); longer gets 414.",
    )
    limit_request_fields: int = option(
        100,
        kind=INT,
        minimum=1,
        help="Most header fields in a request; more gets 431.",
    )
    limit_request_field_size: int = option(
        8190,
        kind=INT,
        minimum=64,
        help="Longest header field (name and value) in bytes; longer gets 431.",
    )
    max_body_size: int = option(
        100 * 1024 * 1024,
        kind=INT,
        minimum=0,
        help="Largest request body in bytes; a bigger Content-Length gets 413 before the "
        "body is read, a chunked body is cut off at it. 0: no limit.",
    )
    worker_connections: int = option(
        10000,
        kind=INT,
        minimum=1,
        help="Connections one worker holds at most; past it the worker stops accepting "
        "(clients wait in the listen queue) instead of running out of file descriptors.",
    )
    limit_request_head_size: int = option(
        16384,
        kind=INT,
        minimum=1024,
        help="Bytes of an unfinished request head (request line and headers) buffered "
        "before the request is refused with 431.",
    )
    hooks: str | None = option(
        None,
        example="myproject.gunrunner_hooks",
        kind=OPTIONAL_STR,
        metavar="MODULE",
        help="Python module with server hooks, named and called as gunicorn's: "
        "on_starting, when_ready, post_fork, post_worker_init, worker_exit, on_reload, "
        "on_exit. A hook that raises is logged; in post_fork or post_worker_init it fails "
        "the worker's boot (exit 3).",
    )
    proc_name: str = option(
        "gunrunner",
        kind=STR,
        help='Name shown by ps and top: "NAME: arbiter", "NAME: worker slot=2" (the '
        "full title needs the setproctitle package, gunrunner[proctitle]; without it only "
        "the 15-byte process name changes).",
    )
    preload_app: bool = option(
        False,
        kind=BOOL,
        help="Import the app once in the main process before the workers are forked, so "
        "they share its memory copy-on-write. SIGHUP then reloads the configuration but "
        "not the code: deploy code with a restart, or a second instance (shared_bind).",
    )
    reload: bool = option(
        False,
        kind=BOOL,
        help="Development: restart the workers when a watched file changes. New code is "
        "imported in new workers only; if it fails to import, the last good workers keep "
        "serving until the next change.",
    )
    reload_dirs: tuple[str, ...] = option(
        (),
        kind=STR_LIST,
        metavar="DIR",
        help="Directories watched with --reload besides app_dir (repeat for several).",
    )
    reload_includes: tuple[str, ...] = option(
        ("*.py",),
        kind=STR_LIST,
        metavar="GLOB",
        help="File name globs that trigger a reload (given ones replace the default).",
    )
    reload_excludes: tuple[str, ...] = option(
        (),
        kind=STR_LIST,
        metavar="GLOB",
        help="Globs of paths or path parts never watched, besides hidden directories, "
        "__pycache__, .git and virtualenvs.",
    )
    ws_max_message_size: int = option(
        16 * 1024 * 1024,
        kind=INT,
        minimum=1,
        help="Largest WebSocket message in bytes (characters for text); a bigger one "
        "closes the connection with 1009.",
    )
    ws_max_queue: int = option(
        32,
        kind=INT,
        minimum=1,
        help="WebSocket messages received but not yet read by the app; past it the "
        "server stops reading from that client.",
    )
    ws_ping_interval: float = option(
        20.0,
        kind=FLOAT,
        minimum=0,
        help="Seconds between keepalive pings on an idle WebSocket; 0 disables them.",
    )
    ws_ping_timeout: float = option(
        20.0,
        kind=FLOAT,
        minimum=0,
        help="Seconds a WebSocket peer has to answer a ping before it is closed with 1011.",
    )
    ws_per_message_deflate: bool = option(
        True,
        kind=BOOL,
        help="Offer the permessage-deflate WebSocket extension (compression).",
    )
    certfile: str | None = option(
        None,
        example="/etc/gunrunner/cert.pem",
        kind=OPTIONAL_STR,
        metavar="FILE",
        help="Serve HTTPS: the PEM certificate chain (server certificate first). "
        "Re-read by the new workers on HUP, so renewed certificates need no restart.",
    )
    keyfile: str | None = option(
        None,
        example="/etc/gunrunner/key.pem",
        kind=OPTIONAL_STR,
        metavar="FILE",
        help="The PEM private key of certfile (omit it when certfile holds the key).",
    )
    keyfile_password: str | None = option(
        None,
        example="...",
        kind=OPTIONAL_STR,
        metavar="PASSWORD",
        secret=True,
        help="Password of an encrypted keyfile. Prefer the config file or the "
        "GUNRUNNER_KEYFILE_PASSWORD env var: a command line is visible to other users. "
        "Never printed by --print-config.",
    )
    ca_certs: str | None = option(
        None,
        example="/etc/gunrunner/client-ca.pem",
        kind=OPTIONAL_STR,
        metavar="FILE",
        help="PEM file of the CAs that client certificates are checked against.",
    )
    cert_reqs: str = option(
        "none",
        kind=STR,
        choices=("none", "optional", "required"),
        help="Client certificates: not asked for, checked when sent, or required (needs ca_certs).",
    )
    ciphers: str | None = option(
        None,
        example="ECDHE+AESGCM:ECDHE+CHACHA20",
        kind=OPTIONAL_STR,
        metavar="LIST",
        help="OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's); default: "
        "Python's secure default.",
    )
    tls_min_version: str = option(
        "1.2",
        kind=STR,
        choices=("1.2", "1.3"),
        help="Oldest TLS version accepted.",
    )
    forwarded_allow_ips: tuple[str, ...] = option(
        ("127.0.0.1", "::1"),
        kind=STR_LIST,
        metavar="IP",
        help='Proxies (addresses or networks, or "*") whose Forwarded / X-Forwarded-For / '
        "-Proto / -Host headers set the client address, scheme and host; other peers' "
        "are ignored. Unix-socket peers are trusted.",
    )
    access_log: str | None = option(
        None,
        example="-",
        kind=OPTIONAL_STR,
        metavar="FILE",
        const="-",
        help='Access log: a file, or "-" (also --access-log alone) for stdout; "off" '
        "disables it. Default: off, but on (stdout) with --reload. It costs throughput: "
        "see README.",
    )
    access_log_format: str = option(
        '{remote_addr} - - [{time}] "{request_line}" {status} {bytes} "{referer}" '
        '"{user_agent}" {duration_ms}ms {request_id}',
        kind=STR,
        help="Text access log line with named fields: remote_addr time method path query "
        "protocol request_line status bytes referer user_agent duration duration_ms "
        "request_id pid.",
    )
    access_log_json: bool = option(
        False,
        kind=BOOL,
        help="Write the access log as JSON lines (every field, escaped) instead of text.",
    )
    access_log_headers: tuple[str, ...] = option(
        (),
        kind=STR_LIST,
        metavar="NAME",
        example=["x-request-id", "response:content-type"],
        help="Header fields added to each JSON access-log line, by name: a request "
        'field ("user-agent"), or a response field prefixed "response:". Repeat for '
        "several; absent fields are null.",
    )
    root_path: str = option(
        "",
        kind=STR,
        help="URL prefix the app is mounted under (ASGI root_path, WSGI SCRIPT_NAME).",
    )
    server_header: bool = option(
        True,
        kind=BOOL,
        help="Send a Server: gunrunner header when the app does not set one.",
    )
    log_level: str = option(
        "info",
        kind=STR,
        choices=("critical", "error", "warning", "info", "debug"),
        help="Lowest level of the error log.",
    )
    log_file: str = option(
        "-",
        kind=STR,
        metavar="FILE",
        help='Error log file; "-" is stderr. Reopened on SIGUSR1 (log rotation).',
    )
    metrics_bind: str | None = option(
        None,
        example="127.0.0.1:9100",
        kind=OPTIONAL_STR,
        metavar="HOST:PORT",
        help="Serve /metrics (Prometheus, summed over every worker), /livez and /readyz "
        "(503 while draining) on this address, from a small admin process of the "
        "arbiter. Off by default; keep it on a private address. Port 0 picks one "
        "(logged). With it set, workers = 1 runs one worker under the arbiter.",
    )
    log_format: str = option(
        "text",
        kind=STR,
        choices=("text", "json"),
        help='Error log format: "text" lines, or "json": one object per line with time '
        "(ISO 8601), level, logger, role, pid, slot, message and exception text.",
    )
    log_config: str | None = option(
        None,
        example="conf/logging.toml",
        kind=OPTIONAL_STR,
        metavar="FILE",
        help="A logging.config.dictConfig file (JSON or TOML) applied in the arbiter and "
        "every worker after gunrunner's own setup; a [logging] table in the config file "
        "does the same inline.",
    )
    request_warn_after: float = option(
        30.0,
        kind=FLOAT,
        minimum=0,
        help="Seconds after which a request still running has its stack logged once "
        "(WSGI thread or ASGI task), with method, path and request id; 0 disables it. "
        "The request goes on.",
    )
    pidfile: str | None = option(
        None,
        example="/run/gunrunner.pid",
        kind=OPTIONAL_STR,
        metavar="FILE",
        help="Write the main process id to this file; removed at exit.",
    )


FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(Options)}

# Old option names, still read from every source as the new one (with a warning).
ALIASES: dict[str, str] = {
    "h11_max_incomplete_event_size": "limit_request_head_size",
}


def canonical(name: str) -> str:
    """The option `name` stands for: itself, or the new name of a deprecated alias."""
    return ALIASES.get(name, name)


def spec_of(name: str) -> OptionSpec:
    """The OptionSpec of option `name` (KeyError for an unknown name)."""
    spec: OptionSpec = FIELDS[name].metadata[SPEC]
    return spec


def kind_of(name: str) -> Kind:
    return spec_of(name).kind


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_of(name: str) -> str:
    return ENV_PREFIX + name.upper()
