"""Every semantic check of the options, in one place, before any worker is forked.

config.py checks each value alone (type, choices, minimum); this module checks what the
values mean together and on this machine: proxy trust, the access-log format, the TLS
files, the event loop, the log, access-log and pid file paths, user and group, the
user's logging
dictConfig (log_config or a [logging] table), and (when asked) the binds and the app.

Rules:
1. No side effects of ours: nothing is created, written or left listening. Paths are
   checked for being writable, not opened; binds are probed, never left bound. The app
   is imported only when asked for (--check-config: importing runs the app's own code,
   which may write what it likes), never in the arbiter, which must stay free of the
   app's threads and state when it forks.
2. One function for every caller: the start (cli), --check-config, and the arbiter's
   HUP before any worker is replaced. What the workers would refuse is refused here
   first, naming the key and where its value came from.
3. Every problem is collected; callers that need one error raise the first.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from gunrunner import config, logs, privileges
from gunrunner._cpus import resolve_workers
from gunrunner.access import check_format
from gunrunner.apps.loader import load_app
from gunrunner.errors import BindError, ConfigError, GunrunnerError
from gunrunner.hooks import load_hooks
from gunrunner.net import check_free, check_unix_path, parse_bind, resolve
from gunrunner.proxy import ProxyTrust
from gunrunner.tls import TLSServer, build_tls


@dataclass(slots=True)
class Checked:
    """What the checks found and built."""

    workers: int = 1
    tls: TLSServer | None = None
    interface: str | None = None  # set when the app was imported (check_app)
    log_config: logs.UserConfig | None = None  # the user's dictConfig, checked
    identity: privileges.Identity | None = None  # user / group to drop to, resolved
    problems: list[GunrunnerError] = field(default_factory=list)

    def raise_first(self) -> None:
        if self.problems:
            raise self.problems[0]


def check(
    loaded: config.Loaded,
    *,
    check_binds: bool = False,
    check_app: bool = False,
    reloading: bool = False,
) -> Checked:
    """Run every check; raise the first problem (see `survey` to get them all).

    `reloading` (HUP): leave out what only the start uses (the pidfile, user and group),
    which the server, perhaps no longer root, could not pass and does not redo.
    """
    checked = survey(loaded, check_binds=check_binds, check_app=check_app, reloading=reloading)
    checked.raise_first()
    return checked


def survey(
    loaded: config.Loaded,
    *,
    check_binds: bool = False,
    check_app: bool = False,
    reloading: bool = False,
) -> Checked:
    """Run every check and collect the problems instead of stopping at the first."""
    options = loaded.options
    checked = Checked(workers=resolve_workers(options.workers))
    problems = checked.problems

    def attempt(key: str, check: Callable[[], object]) -> object:
        try:
            return check()
        except ConfigError as exc:
            problems.append(exc.located(loaded.sources.get(exc.key or key)))
        except GunrunnerError as exc:
            problems.append(exc)
        return None

    attempt("forwarded_allow_ips", lambda: ProxyTrust(options.forwarded_allow_ips))
    attempt("access_log_format", lambda: _check_access_format(options.access_log_format))
    tls = attempt("certfile", lambda: build_tls(options))
    checked.tls = tls if isinstance(tls, TLSServer) else None
    attempt("loop", lambda: _check_loop(options.loop))
    attempt("http", lambda: _check_http(options.http))
    if options.preload_app and options.reload:
        problems.append(
            ConfigError(
                "preload_app: cannot be combined with reload (the arbiter would keep the "
                "old code); turn one off",
                key="preload_app",
            ).located(loaded.sources.get("preload_app"))
        )
    attempt("log_file", lambda: _check_writable("log_file", options.log_file))
    user_log = attempt("log_config", lambda: _check_log_config(loaded))
    checked.log_config = user_log if isinstance(user_log, logs.UserConfig) else None
    if not reloading:
        identity = attempt("user", lambda: privileges.resolve(options.user, options.group))
        checked.identity = identity if isinstance(identity, privileges.Identity) else None
    if options.access_log not in (None, "-", "off"):
        attempt("access_log", lambda: _check_writable("access_log", options.access_log))
    if options.pidfile and not reloading:
        # Written to a temporary file, then renamed over: its directory must be writable.
        attempt("pidfile", lambda: _check_writable("pidfile", options.pidfile, replace=True))
    for bind in options.bind:
        attempt("bind", functools.partial(_check_bind, bind, options.shared_bind, check_binds))
    if check_app and options.hooks:
        attempt("hooks", lambda: load_hooks(options.hooks, options.app_dir))
    if check_app and options.app:
        loaded_app = attempt("app", lambda: load_app(options))
        if isinstance(loaded_app, tuple):
            checked.interface = loaded_app[1]
    return checked


def _check_access_format(fmt: str) -> None:
    problem = check_format(fmt)
    if problem:
        raise ConfigError(f"access_log_format: {problem}", key="access_log_format")


def _check_log_config(loaded: config.Loaded) -> logs.UserConfig | None:
    """The user's dictConfig (log_config file or [logging] table), read and checked."""
    user = logs.user_config(loaded.options.log_config, loaded.logging, loaded.config_file)
    if user is not None:
        logs.check_user_config(user)
    return user


def uvloop_missing() -> ConfigError:
    return ConfigError(
        'loop = "uvloop" but uvloop is not installed; '
        "pip install 'gunrunner[fast]' or use loop = \"auto\"",
        key="loop",
    )


def _check_loop(choice: str) -> None:
    if choice == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise uvloop_missing()


def httptools_missing() -> ConfigError:
    return ConfigError(
        'http = "httptools" but httptools is not installed; '
        "pip install 'gunrunner[fast]' or use http = \"auto\"",
        key="http",
    )


def _check_http(choice: str) -> None:
    if choice == "httptools" and importlib.util.find_spec("httptools") is None:
        raise httptools_missing()


def _check_writable(key: str, path: str | None, *, replace: bool = False) -> None:
    """`path` can be opened for appending (or created; with `replace`, created beside
    and renamed over) by this user; nothing is written."""
    if not path or path == "-":
        return
    if os.path.isdir(path):
        raise ConfigError(f"{key}: {path} is a directory; give a file name", key=key)
    if os.path.exists(path) and not replace:
        if not os.access(path, os.W_OK):
            raise ConfigError(f"{key}: {path} is not writable by this user", key=key)
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConfigError(
            f"{key}: directory {directory} does not exist; create it or choose another path",
            key=key,
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{key}: cannot create {path}: directory {directory} is not writable by this user",
            key=key,
        )


def _check_bind(text: str, shared_bind: bool, probe: bool) -> None:
    """Parse the bind; with `probe`, also check that it could be listened on."""
    spec = parse_bind(text)
    if not probe:
        return
    for address in resolve(spec):
        if spec.kind == "tcp" and not shared_bind:
            check_free(address)  # binds a probe and closes it: nothing stays behind
        elif spec.kind == "unix":
            _check_unix_path(spec.path, text)
        elif spec.kind == "fd":
            _check_fd(spec.fd, text)


def _check_unix_path(path: str, text: str) -> None:
    if os.path.lexists(path):
        check_unix_path(path)  # a stale socket file is fine: the start replaces it
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise BindError(text, f"directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise BindError(text, "permission denied", "check the path")


def _check_fd(fd: int, text: str) -> None:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        raise BindError(text, f"file descriptor {fd} is not open") from None
    if not stat.S_ISSOCK(mode):
        raise BindError(text, f"file descriptor {fd} is not a socket")
