"""Every option, declared once; loaded from TOML, then GUNRUNNER_* env vars, then the CLI.

Rules:
1. An option is one field of `Options`. Its name is the TOML key, `--name-with-dashes` is
   its flag and `GUNRUNNER_NAME` its environment variable. Help, kind, default and check
   live beside it (an `OptionSpec`, see _kinds.py; `spec_of(name)` reads it); the CLI,
   the loader, `--print-config` and the docs read this table.
2. Later sources win: defaults < config file < environment < command line.
3. A bad value is a ConfigError naming the key, where it came from and what was expected.
   An unknown key is an error that names the closest option.
4. A renamed option keeps its old name as a deprecated alias (`ALIASES`, old -> new) in
   every source; using it is a warning (`Loaded.deprecations`, logged by
   `log_deprecations` once logging is set up), giving both names in one source an error.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The kinds and the spec are part of this module's interface: pyproject.toml lets mypy
# see these names re-exported (implicit_reexport for gunrunner.config).
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
from gunrunner.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

log = logging.getLogger(__name__)

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


def convert_text(name: str, text: str, source: str) -> Any:
    """Read one option's value from text (CLI or environment); raise a ConfigError.

    `name` may be a deprecated alias: the value is read as its new option's, and errors
    name the alias as given.
    """
    spec = spec_of(canonical(name))
    try:
        value = spec.kind.from_text(text)
    except (TypeError, ValueError):
        shown = "a secret value" if spec.secret else repr(text)
        raise ConfigError(
            f"{_label(name, source)}: expected {spec.expected()}, got {shown}",
            key=name,
            source=source,
        ) from None
    problem = spec.problem(value)
    if problem:
        raise ConfigError(f"{_label(name, source)}: {problem}", key=name, source=source)
    return value


def _label(name: str, source: str) -> str:
    if source == "command line":
        return flag_of(name)
    if source == "environment":
        return env_of(name)
    return f'key "{name}"'


def _unknown(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def read_file(path: str) -> dict[str, Any]:
    """Parse a TOML config file into option values, checking every key and value.

    A deprecated alias stays under its old name here; `load` renames it.
    """
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist", source=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", source=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=path) from None
    values: dict[str, Any] = {}
    for key, raw_value in raw.items():
        if key not in FIELDS and key not in ALIASES:
            raise ConfigError(
                f'unknown key "{key}"{_unknown(key, list(FIELDS))}', key=key, source=path
            )
        spec = spec_of(canonical(key))
        try:
            value = spec.kind.from_toml(raw_value)
        except (TypeError, ValueError):
            shown = _toml_repr(key, raw_value)
            raise ConfigError(
                f'key "{key}": expected {spec.expected()}, got {shown}',
                key=key,
                source=path,
            ) from None
        problem = spec.problem(value)
        if problem:
            raise ConfigError(f'key "{key}": {problem}', key=key, source=path)
        values[key] = value
    return values


def _toml_repr(key: str, value: Any) -> str:
    type_name = {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)
    if canonical(key) in SECRET_OPTIONS:
        return f"a value of type {type_name} (not shown: it is secret)"
    return f"{value!r} ({type_name})"


def read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """Option values from GUNRUNNER_* variables; an unknown one is an error.

    A deprecated alias stays under its old name here; `load` renames it.
    """
    values: dict[str, Any] = {}
    for var, text in environ.items():
        if not var.startswith(ENV_PREFIX) or var in ENV_NOT_OPTIONS:
            continue
        name = var[len(ENV_PREFIX) :].lower()
        if name not in FIELDS and name not in ALIASES:
            known = [env_of(n) for n in FIELDS]
            raise ConfigError(
                f"unknown environment variable {var}{_unknown(var, known)}",
                key=name,
                source="environment",
            )
        values[name] = convert_text(name, text, "environment")
    return values


@dataclass(frozen=True, slots=True)
class Loaded:
    """The merged options, where each value came from, and the file that was read.

    `deprecations`: one warning per deprecated name used, for `log_deprecations`.
    """

    options: Options
    sources: dict[str, str]
    config_file: str | None
    deprecations: tuple[str, ...] = ()


def load(
    cli_values: Mapping[str, Any],
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Loaded:
    """Merge defaults < config file < environment < command line into Options."""
    environ = os.environ if environ is None else environ
    if config_file is None:
        config_file = environ.get("GUNRUNNER_CONFIG") or None
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if config_file:
        layers.append((config_file, read_file(config_file)))
    layers.append(("environment", read_env(environ)))
    layers.append(("command line", cli_values))
    merged: dict[str, Any] = {}
    sources = dict.fromkeys(FIELDS, "default")
    deprecations: list[str] = []
    for source, values in layers:
        for name, value in _renamed(values, source, deprecations).items():
            merged[name] = value
            sources[name] = source
    return Loaded(Options(**merged), sources, config_file, tuple(deprecations))


def _renamed(values: Mapping[str, Any], source: str, notes: list[str]) -> dict[str, Any]:
    """One source's values with deprecated aliases under their new names; a warning in
    `notes` for each alias used, a ConfigError when a source gives both names."""
    renamed: dict[str, Any] = {}
    for name, value in values.items():
        new = canonical(name)
        if new != name:
            if new in values:
                old_label, new_label = _label(name, source), _label(new, source)
                raise ConfigError(
                    f"{old_label} and {new_label} are both given; {old_label} is the "
                    f"deprecated name of {new_label}: give only {new_label}",
                    key=new,
                    source=source,
                )
            notes.append(
                f"{_spelled(name, source)} {_where(source)} is deprecated; "
                f"use {_spelled(new, source)}"
            )
        renamed[new] = value
    return renamed


def _spelled(name: str, source: str) -> str:
    """An option's name as `source` spells it: TOML key, GUNRUNNER_ variable or --flag."""
    if source in ("command line", "environment"):
        return _label(name, source)
    return name


def _where(source: str) -> str:
    if source == "command line":
        return "on the command line"
    if source == "environment":
        return "in the environment"
    return f"in {source}"


def log_deprecations(loaded: Loaded) -> None:
    """Warn about each deprecated name `loaded` was read with (call once logging is set up)."""
    for note in loaded.deprecations:
        log.warning("%s", note)


# Values --print-config and error messages must not show.
SECRET_OPTIONS = frozenset(name for name in FIELDS if spec_of(name).secret)


def render_toml(loaded: Loaded) -> str:
    """The effective configuration as TOML, each value commented with its source."""
    lines = ["# gunrunner effective configuration; the comment says where each value came from"]
    for name in FIELDS:
        value = getattr(loaded.options, name)
        if name in SECRET_OPTIONS and value is not None:
            lines.append(f"# {name} is set (not shown)  # {loaded.sources[name]}")
            continue
        lines.append(f"{name} = {kind_of(name).to_toml(value)}  # {loaded.sources[name]}")
    return "\n".join(lines) + "\n"


def apply_umask(options: Options) -> int | None:
    """Set the process umask from `umask`, once at start; return the old one (None: unset).

    Called before the log file, the listeners and the pid file are created, so that all
    of them, and whatever the workers create, get it.
    """
    if options.umask is None:
        return None
    return os.umask(options.umask)
