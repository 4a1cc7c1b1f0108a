"""The command line: argparse built from the option table. The only place that exits."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from gunrunner import __version__, config, logs
from gunrunner._cpus import resolve_workers
from gunrunner.access import check_format
from gunrunner.arbiter import Arbiter
from gunrunner.errors import EXIT_OK, ConfigError, GunrunnerError
from gunrunner.net import Listeners
from gunrunner.proxy import ProxyTrust
from gunrunner.tls import build_tls
from gunrunner.worker import load_app, serve_single

log = logging.getLogger("gunrunner.main")

# A flag may not be given as an option on the command line (it has its own action).
_POSITIONAL = "app"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gunrunner",
        description="Serve a WSGI or ASGI app with pre-forked workers.",
        epilog="Every option can also be set in the --config TOML file (key = option name "
        "with underscores) or as GUNRUNNER_<NAME> in the environment; the command line wins.",
    )
    parser.add_argument("app", nargs="?", metavar="MODULE:ATTR", help=_help("app"))
    parser.add_argument("-c", "--config", metavar="FILE", help="TOML config file to read.")
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="Print the effective configuration as TOML and exit.",
    )
    parser.add_argument(
        "--check-config", action="store_true", help="Check the configuration and binds, then exit."
    )
    parser.add_argument("--version", action="version", version=f"gunrunner {__version__}")
    for name, field in config.FIELDS.items():
        if name == _POSITIONAL:
            continue
        meta = field.metadata
        flags = [config.flag_of(name)] + ([meta["short"]] if meta["short"] else [])
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": _help(name)}
        if meta["kind"] is config.BOOL:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = meta["metavar"] or name.upper()
            if meta["kind"] is config.STR_LIST:
                kwargs["action"] = "append"
            if meta["const"] is not None:
                kwargs["nargs"] = "?"
                kwargs["const"] = meta["const"]
        parser.add_argument(*flags, **kwargs)
    return parser


def _help(name: str) -> str:
    meta = config.FIELDS[name].metadata
    default = config.FIELDS[name].default
    text: str = meta["help"]
    if meta["choices"]:
        text += " One of: " + ", ".join(meta["choices"]) + "."
    if default not in (None, "") and name != _POSITIONAL:
        shown = config.kind_of(name).to_toml(default)
        text += f" Default: {shown}."
    return text.replace("%", "%%")


def cli_values(namespace: argparse.Namespace) -> dict[str, Any]:
    """Option values given on the command line, converted and checked."""
    values: dict[str, Any] = {}
    for name in config.FIELDS:
        if not hasattr(namespace, name) or getattr(namespace, name) is None:
            continue
        raw = getattr(namespace, name)
        kind = config.kind_of(name)
        if isinstance(raw, bool):
            values[name] = raw
        elif kind is config.STR_LIST:
            items: list[str] = []
            for text in raw:
                items.extend(config.convert_text(name, text, "command line"))
            values[name] = tuple(items)
        else:
            values[name] = config.convert_text(name, raw, "command line")
    return values


def run(argv: Sequence[str] | None = None) -> int:
    """Parse, load, bind and serve; return the exit code or raise GunrunnerError."""
    namespace = build_parser().parse_args(argv)
    values = cli_values(namespace)
    loaded = config.load(values, namespace.config)
    options = loaded.options
    if namespace.print_config:
        sys.stdout.write(config.render_toml(loaded))
        return EXIT_OK
    ProxyTrust(options.forwarded_allow_ips)  # a bad entry is a config error before forking
    problem = check_format(options.access_log_format)
    if problem:
        raise ConfigError(f"access_log_format: {problem}", key="access_log_format")
    tls = build_tls(options)  # unreadable or mismatched certificates: a config error now
    logs.setup(options.log_level, options.log_file)
    raise_fd_limit(options.worker_connections + 64)
    workers = resolve_workers(options.workers)
    listeners = Listeners(
        options.bind,
        backlog=options.backlog,
        reuse_port=options.reuse_port and workers > 1,
        shared_bind=options.shared_bind,
    )
    if namespace.check_config:
        listeners.close_all()
        app_note = "no app set (give it on the command line)"
        if options.app:
            _, interface = load_app(options)
            app_note = f"app {options.app} imports as {interface.upper()}"
        print(f"configuration ok: {workers} worker(s), binds {', '.join(options.bind)}; {app_note}")
        return EXIT_OK
    if not options.app:
        listeners.close_all()
        raise ConfigError("no app given: pass module:attribute, or set app in the config file")
    urls = ", ".join(_url(name, tls is not None) for name in listeners.names())
    try:
        with _pidfile(options.pidfile):
            if workers <= 1 and not options.reload:
                logs.set_role("main")
                log.info("listening on %s (1 process, no fork)", urls)
                return serve_single(options, listeners.for_slot(0))
            logs.set_role("arbiter")
            log.info("listening on %s (%d workers, %s listeners)", urls, workers, listeners.mode)
            return Arbiter(loaded, values, listeners, max(workers, 1)).run()
    finally:
        listeners.close_all()


def raise_fd_limit(needed: int) -> None:
    """Lift the soft open-files limit to `needed` (as far as the hard limit allows).

    Every worker holds up to worker_connections sockets plus its own files; a soft limit
    of 1024, common on desktops and in containers, would make accept() fail long before.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            target = soft
        else:
            log.info("raised the open-files limit from %d to %d (worker_connections)", soft, target)
    if target < needed:
        log.warning(
            "open-files limit %d is below what worker_connections needs (%d); raise it "
            "(ulimit -n, or LimitNOFILE= in systemd) or lower worker_connections",
            target,
            needed,
        )


def _url(name: str, tls: bool) -> str:
    if name.startswith("unix:"):
        return name + (" (TLS)" if tls else "")
    return ("https://" if tls else "http://") + name


@contextlib.contextmanager
def _pidfile(path: str | None) -> Any:
    if not path:
        yield
        return
    pid = os.getpid()
    tmp = f"{path}.{pid}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(f"{pid}\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write pidfile {path}: {exc.strerror}", key="pidfile") from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            with open(path) as f:
                mine = f.read().strip() == str(pid)
            if mine:
                os.unlink(path)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    try:
        code = run(argv)
    except GunrunnerError as exc:
        sys.stderr.write(f"gunrunner: {exc}\n")
        code = exc.exit_code
    except KeyboardInterrupt:
        code = EXIT_OK
    sys.exit(code)
