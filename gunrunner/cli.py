"""The command line: argparse built from the option table. The only place that exits."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import gc
import logging
import os
import re
import resource
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from gunrunner import __version__, config, logs, preflight, privileges, proctitle, systemd
from gunrunner._kinds import BOOL, STR_LIST
from gunrunner.admin import bind_admin
from gunrunner.apps.loader import load_app
from gunrunner.arbiter import Arbiter
from gunrunner.errors import EXIT_CONFIG, EXIT_OK, ConfigError, GunrunnerError
from gunrunner.hooks import load_hooks
from gunrunner.net import Listeners, privileged_ports
from gunrunner.recycling import RecyclePolicy
from gunrunner.worker import serve_single

log = logging.getLogger(__name__)

# The option given as the positional argument (MODULE:ATTR), not as a --flag.
_POSITIONAL = "app"
# What an app argument looks like: module.path:attribute, maybe with "()" (a factory).
_APP_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*(\(\))?")


class _Parser(argparse.ArgumentParser):
    """argparse, with a did-you-mean for unknown flags (config keys have one too)."""

    def error(self, message: str) -> NoReturn:
        unknown = re.search(r"unrecognized arguments: (\S+)", message)
        if unknown and unknown.group(1).startswith("-"):
            flag = unknown.group(1).split("=", 1)[0]
            known = [
                o
                for action in self._actions
                if action.help != argparse.SUPPRESS  # not the deprecated flags
                for o in action.option_strings
            ]
            close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else "; see gunrunner --help"
            self.exit(EXIT_CONFIG, f"gunrunner: unknown option {flag}{hint}\n")
        self.print_usage(sys.stderr)
        self.exit(EXIT_CONFIG, f"gunrunner: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    # A deprecated name has its flag too, under its own dest (cli_values reads it), hidden.
    for name in [*config.FIELDS, *config.ALIASES]:
        if name == _POSITIONAL:
            continue
        deprecated = name in config.ALIASES
        spec = config.spec_of(config.canonical(name))
        flags = [config.flag_of(name)] + ([spec.short] if spec.short and not deprecated else [])
        kwargs: dict[str, Any] = {
            "dest": name,
            "default": argparse.SUPPRESS,
            "help": argparse.SUPPRESS if deprecated else _help(name),
        }
        if spec.kind is BOOL:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = spec.metavar or name.upper()
            if spec.kind is STR_LIST:
                kwargs["action"] = "append"
            if spec.const is not None:
                kwargs["nargs"] = "?"
                kwargs["const"] = spec.const
        parser.add_argument(*flags, **kwargs)
    return parser


def _help(name: str) -> str:
    spec = config.spec_of(name)
    default = config.FIELDS[name].default
    text = spec.help
    if spec.choices:
        text += " One of: " + ", ".join(spec.choices) + "."
    if default not in (None, "") and name != _POSITIONAL:
        shown = config.kind_of(name).to_toml(default)
        text += f" Default: {shown}."
    return text.replace("%", "%%")


def cli_values(namespace: argparse.Namespace) -> dict[str, Any]:
    """Option values given on the command line, converted and checked (a deprecated name
    stays as given: config.load renames it and warns)."""
    values: dict[str, Any] = {}
    for name in [*config.FIELDS, *config.ALIASES]:
        if not hasattr(namespace, name) or getattr(namespace, name) is None:
            continue
        raw = getattr(namespace, name)
        kind = config.kind_of(config.canonical(name))
        if isinstance(raw, bool):
            values[name] = raw
        elif kind is STR_LIST:
            items: list[str] = []
            for text in raw:
                items.extend(config.convert_text(name, text, "command line"))
            values[name] = tuple(items)
        else:
            values[name] = config.convert_text(name, raw, "command line")
    return values


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """argparse, plus one habit fixed: a flag whose value is optional (--access-log)
    never swallows the app argument that follows it."""
    namespace = build_parser().parse_args(argv)
    if namespace.app is None:
        for name in config.FIELDS:
            const = config.spec_of(name).const
            value = getattr(namespace, name, None)
            if const is not None and isinstance(value, str) and _APP_SPEC.fullmatch(value):
                setattr(namespace, name, const)
                namespace.app = value
                break
    return namespace


def run(argv: Sequence[str] | None = None) -> int:
    """Parse, load, check, bind and serve; return the exit code or raise GunrunnerError."""
    namespace = parse_args(argv)
    values = cli_values(namespace)
    # Read once, and removed from the environment: no worker or app inherits them.
    activated = systemd.listen_fds()
    notifier = systemd.Notifier.from_environ()
    loaded = config.load(
        values, namespace.config, activated=tuple((a.fd, a.name) for a in activated)
    )
    options = loaded.options
    if namespace.print_config:
        sys.stdout.write(config.render_toml(loaded))
        return EXIT_OK
    if namespace.check_config:
        return check_config(loaded)
    checked = preflight.check(loaded)
    if not options.app:
        raise ConfigError("no app given: pass module:attribute, or set app in the config file")
    config.apply_umask(options)  # before the first file (log, socket, pidfile) is created
    logs.setup_from(options, checked.log_config)  # log_format, then log_config
    config.log_deprecations(loaded)
    raise_fd_limit(options.worker_connections + 64)
    if activated:
        _log_activation(activated, options.bind)
    workers = checked.workers
    reuse_port = options.reuse_port and workers > 1
    identity = checked.identity
    privileged = privileged_ports(options.bind) if identity is not None else []
    if reuse_port and privileged and identity is not None:
        # A slot's sockets are reopened when its worker is replaced, by then as the
        # user, who may not bind these ports: every worker shares one socket instead.
        log.info(
            "port %s needs root to bind and the server runs as %s: one socket shared "
            "by every worker instead of one per worker (SO_REUSEPORT)",
            ", ".join(map(str, privileged)), identity.name,
        )  # fmt: skip
        reuse_port = False
    listeners = Listeners(
        options.bind,
        backlog=options.backlog,
        reuse_port=reuse_port,
        shared_bind=options.shared_bind,
        unix_socket_mode=options.unix_socket_mode,
    )
    urls = ", ".join(_url(name, checked.tls is not None) for name in listeners.names())
    try:
        with _pidfile(options.pidfile):
            # Recycling needs an arbiter to start the replacement, metrics one to sum the
            # workers, systemd one to be told: with any, even one worker has an arbiter.
            recycles = RecyclePolicy.from_options(options).enabled
            arbiter_needed = (
                options.reload or recycles or options.metrics_bind or notifier or options.hooks
            )
            single = workers <= 1 and not arbiter_needed
            logs.set_role("main" if single else "arbiter")
            proctitle.set_title("main" if single else "arbiter", options.proc_name)
            # Bound and written as root; no child is forked before this (privileges.py).
            admin_socket = None
            if options.metrics_bind and not single:
                admin_socket = bind_admin(options.metrics_bind)  # (a port < 1024 too)
            if identity is not None:
                privileges.hand_over(identity, _files_kept_open(options, listeners))
                listeners.hand_over(identity.uid, identity.gid)
                privileges.drop(identity)
            privileges.warn_if_root()
            if single:
                log.info("listening on %s (1 process, no fork)", urls)
                return serve_single(options, listeners.for_slot(0))
            log.info("listening on %s (%d workers, %s)", urls, workers, listeners.describe_modes())
            hooks = load_hooks(options.hooks, options.app_dir)  # (user code: not as root)
            preloaded = preload(options) if options.preload_app else None
            arbiter = Arbiter(
                loaded,
                values,
                listeners,
                max(workers, 1),
                preloaded=preloaded,
                notifier=notifier,
                hooks=hooks,
                admin_socket=admin_socket,
            )
            return arbiter.run()
    finally:
        listeners.close_all()


def _log_activation(activated: list[systemd.ActivatedSocket], binds: tuple[str, ...]) -> None:
    """Check what systemd passed, and say which of it is served."""
    systemd.check_listening(activated)
    served = [a for a in activated if a.bind in binds]
    unused = [a for a in activated if a.bind not in binds]
    if served:
        names = ", ".join(f"{a.name}={a.bind}" for a in served)
        log.info("socket activation: serving %s passed by systemd", names)
    if unused:
        names = ", ".join(f"{a.name}={a.bind}" for a in unused)
        log.warning("socket activation: %s passed by systemd but not in bind; not served", names)


def _files_kept_open(options: config.Options, listeners: Listeners) -> list[str]:
    """Files the server goes on writing or reopening after it dropped to `user`: its unix
    sockets, the error log, the access log (created here: the workers open it), the
    files of a user's log_config. Not the pidfile: that stays root's."""
    files = [*listeners.unix_paths(), *logs.user_log_files()]
    if options.log_file not in (None, "-"):
        files.append(options.log_file)
    if options.access_log not in (None, "-", "off"):
        with open(options.access_log, "a"):
            pass
        files.append(options.access_log)
    return files


def preload(options: config.Options) -> tuple[Any, str]:
    """preload_app: import the app here, as the user, before any worker is forked."""
    app, interface = load_app(options)
    # Objects that live for the whole run are moved out of the collector's sight, so
    # that a collection in a worker does not write to (and so copy) the shared pages.
    gc.freeze()
    log.info("preloaded %s app %s; workers share it copy-on-write", interface.upper(), options.app)
    return app, interface


def check_config(loaded: config.Loaded) -> int:
    """--check-config: every check preflight has, binds and app import included; every
    problem printed, nothing written or left bound. Exit code of the first problem."""
    options = loaded.options
    checked = preflight.survey(loaded, check_binds=True, check_app=True)
    # The open-files limit as the server would set it, said on stderr: the check's own
    # limit is raised, nothing else changes, and log_file is not opened.
    logs.setup(options.log_level, "-", options.log_format)
    config.log_deprecations(loaded)
    raise_fd_limit(options.worker_connections + 64)
    for problem in checked.problems:
        sys.stderr.write(f"gunrunner: {problem}\n")
    if checked.problems:
        return checked.problems[0].exit_code
    app_note = "no app set (give it on the command line)"
    if options.app and checked.interface:
        app_note = f"app {options.app} imports as {checked.interface.upper()}"
    where = f" ({loaded.config_file})" if loaded.config_file else ""
    print(
        f"configuration ok{where}: {checked.workers} worker(s), binds "
        f"{', '.join(options.bind)}; {app_note}"
    )
    return EXIT_OK


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
def _pidfile(path: str | None) -> Iterator[None]:
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
