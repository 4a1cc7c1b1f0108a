"""The error log: one format for every process, each line tagged with role and pid.

`[arbiter 4120]`, `[worker 4123 slot=2]`: an operator reading a merged log knows which
process spoke. The file named by `log_file` is reopened on SIGUSR1 (log rotation).

Rules:
1. `log_format = "json"`: one JSON object per line (`JSONFormatter`), with the same time
   (UTC, milliseconds, Z) and the role split into role and slot.
2. A user's dictConfig (`log_config`, or a `[logging]` table in the config file) is
   applied after gunrunner's own setup, in the arbiter (workers inherit it at fork) or
   the single process. `disable_existing_loggers` is false unless the user says
   otherwise. It is checked without side effects first (`check_user_config`, run by
   preflight at start, by --check-config and on HUP), so a bad one stops the start or
   refuses the HUP while the running configuration stays.
3. A logger the user's config names is the user's: for gunrunner's own lines to keep
   going to log_file as well, name the `gunrunner.logs.ErrorLogHandler` class among its
   handlers.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import logging.config
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from gunrunner.errors import ConfigError

if TYPE_CHECKING:
    from gunrunner.options import Options

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

FORMAT = "%(asctime)s [%(role)s %(process)d] %(levelname)s %(name)s: %(message)s"
_role = "main"
log = logging.getLogger(__name__)


class _RoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.role = _role
        return True


class ReopenableHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to stderr or to a file that `reopen()` opens anew (after logrotate moved it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(self._open())

    def _open(self) -> TextIO:
        if self.path == "-":
            return sys.stderr
        return open(self.path, "a", buffering=1, encoding="utf-8")

    def reopen(self) -> None:
        _reopen(self, self._open, self.path)


class ErrorLogHandler(logging.Handler):
    """gunrunner's error log as a handler a dictConfig may name (Rule 3): each record goes
    where log_file says, in log_format, tagged with the process role."""

    def emit(self, record: logging.LogRecord) -> None:
        if _handler is not None:
            _handler.handle(record)


@functools.lru_cache(maxsize=64)
def split_role(role: str) -> tuple[str, int | None]:
    """("worker", 2) for "worker slot=2"; ("arbiter", None) for "arbiter"."""
    name, _, slot = role.partition(" slot=")
    try:
        return name, int(slot) if slot else None
    except ValueError:
        return role, None


class JSONFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, role, slot, pid, message, and
    exception (the traceback and stack text) only when the record has one."""

    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def __init__(self) -> None:
        super().__init__()
        self.converter = time.gmtime  # UTC, as the text format
        self._encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode

    def format(self, record: logging.LogRecord) -> str:
        role, slot = split_role(getattr(record, "role", _role))
        fields: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "role": role,
            "slot": slot,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        trace = record.exc_text or ""
        if record.stack_info:
            trace = (trace + "\n" if trace else "") + self.formatStack(record.stack_info)
        if trace:
            fields["exception"] = trace
        return self._encode(fields)


_handler: ReopenableHandler | None = None


def setup(level: str, path: str = "-", fmt: str = "text") -> None:
    """Configure the `gunrunner` logger tree once per process (`fmt`: "text" or "json")."""
    global _handler
    root = logging.getLogger("gunrunner")
    for handler in list(root.handlers):  # ours, and a previous dictConfig's (HUP)
        root.removeHandler(handler)
    if _handler is not None and _handler.stream is not sys.stderr:
        _handler.stream.close()
    _handler = ReopenableHandler(path)
    _handler.setFormatter(JSONFormatter() if fmt == "json" else _utc_formatter())
    _handler.addFilter(_RoleFilter())
    root.addHandler(_handler)
    root.setLevel(level.upper())
    root.propagate = False


@dataclass(frozen=True, slots=True)
class UserConfig:
    """A user's dictConfig and where it came from (a file, or a config file's table)."""

    source: str  # "log_config FILE" or "[logging] table of FILE", for messages
    config: dict[str, Any]
    shadows: str | None = None  # a [logging] table this log_config wins over


def user_config(
    log_config: str | None, table: dict[str, Any] | None, config_file: str | None
) -> UserConfig | None:
    """The dictConfig to apply: the log_config file, else the config file's [logging]
    table. Both set: log_config wins (an option, which the environment or the command
    line may give over the config file), and a warning says so."""
    if log_config:
        user = read_user_config(log_config)
        if table is not None:
            user = UserConfig(user.source, user.config, f"[logging] table of {config_file}")
        return user
    if table is not None:
        return UserConfig(f"[logging] table of {config_file}", table)
    return None


def setup_from(options: Options, user: UserConfig | None, *, reloading: bool = False) -> None:
    """`setup` from the options, then the user's dictConfig (Rule 2), then warnings about
    logging options that do nothing. `reloading` (HUP): a dictConfig that fails anyway
    is logged instead of raised, and gunrunner's own setup stays in effect."""
    setup(options.log_level, options.log_file, options.log_format)
    if user is not None:
        if user.shadows:
            log.warning("%s is applied; the %s is ignored", user.source, user.shadows)
        try:
            apply_user_config(user)
        except ConfigError as exc:
            if not reloading:
                raise
            setup(options.log_level, options.log_file, options.log_format)
            log.error("SIGHUP: %s; not applied, gunrunner's own log setup is in effect", exc)
    if options.access_log_headers and not options.access_log_json:
        log.warning(
            "access_log_headers applies to JSON access-log lines only "
            "(access_log_json = true); the text access log ignores it"
        )


def read_user_config(path: str) -> UserConfig:
    """Read a log_config file: JSON (.json) or TOML (.toml), the dictConfig at its top or
    alone under a "logging" key ([logging], as in a config file); a ConfigError naming it."""
    source = f"log_config {path}"
    if not path.endswith((".json", ".toml")):
        raise ConfigError(f"{source}: name a .json or a .toml file", key="log_config")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read it: {exc.strerror}", key="log_config") from None
    try:
        if path.endswith(".toml"):
            config: Any = tomllib.loads(data.decode("utf-8"))
        else:
            config = json.loads(data)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        kind = "TOML" if path.endswith(".toml") else "JSON"
        raise ConfigError(f"{source}: not valid {kind}: {exc}", key="log_config") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: expected an object (a table) at the top", key="log_config")
    if list(config) == ["logging"] and isinstance(config["logging"], dict):
        # Spelled as a config file's [logging] table: the same file serves both ways.
        config = config["logging"]
    return UserConfig(source, config)


def check_user_config(user: UserConfig) -> None:
    """What dictConfig would refuse, found without configuring anything (no handler is
    built, no file opened): the version, the sections' shapes, the classes, the handlers'
    arguments, levels, and every formatter, filter and handler a name refers to."""
    problem = _config_problem(user.config)
    if problem:
        raise ConfigError(f"{user.source}: {problem}", key="log_config")


def apply_user_config(user: UserConfig) -> None:
    """Apply a user's dictConfig (`disable_existing_loggers` false unless set)."""
    config = dict(user.config)
    config.setdefault("disable_existing_loggers", False)
    try:
        logging.config.dictConfig(config)
    except (ValueError, TypeError, AttributeError, ImportError, OSError) as exc:
        raise ConfigError(f"{user.source}: {exc}", key="log_config") from None


_SECTIONS = ("formatters", "filters", "handlers", "loggers")
_HANDLER_KEYS = frozenset({"class", "()", ".", "level", "formatter", "filters"})


def _config_problem(config: Mapping[str, Any]) -> str | None:
    if config.get("version") != 1:
        return f"version must be 1 (dictConfig schema), got {config.get('version')!r}"
    for section in _SECTIONS:
        entries = config.get(section, {})
        if not isinstance(entries, dict):
            return f"{section} must be a table of named entries"
        for name, entry in entries.items():
            if not isinstance(entry, dict):
                return f"{section}.{name} must be a table"
    if "root" in config and not isinstance(config["root"], dict):
        return "root must be a table"
    if config.get("incremental"):
        return None  # levels and propagation of existing loggers and handlers only
    formatters: dict[str, Any] = config.get("formatters", {})
    filters: dict[str, Any] = config.get("filters", {})
    handlers: dict[str, Any] = config.get("handlers", {})
    loggers: dict[str, Any] = dict(config.get("loggers", {}))
    for name, formatter in formatters.items():
        problem = _formatter_problem(formatter)
        if problem:
            return f"formatters.{name}: {problem}"
    for name, filter_ in filters.items():
        if "()" in filter_:
            problem = _class_problem(filter_["()"], filter_, frozenset({"()", "."}))
            if problem:
                return f"filters.{name}: {problem}"
    for name, handler in handlers.items():
        problem = _handler_problem(handler, formatters, filters, handlers)
        if problem:
            return f"handlers.{name}: {problem}"
    if "root" in config:
        loggers["(root)"] = config["root"]
    for name, logger in loggers.items():
        where = "root" if name == "(root)" else f"loggers.{name}"
        problem = _level_problem(logger.get("level")) or _refs_problem(logger, handlers, filters)
        if problem:
            return f"{where}: {problem}"
    return None


def _formatter_problem(formatter: Mapping[str, Any]) -> str | None:
    factory = formatter.get("()") or formatter.get("class")
    if factory is not None:
        skip = frozenset({"()", ".", "class", "format", "datefmt", "style", "validate"})
        return _class_problem(factory, formatter, skip, args=False)
    try:
        logging.Formatter(
            formatter.get("format"),
            formatter.get("datefmt"),
            formatter.get("style", "%"),
            validate=bool(formatter.get("validate", True)),
        )
    except (ValueError, TypeError) as exc:
        return f"bad format: {exc}"
    return None


def _handler_problem(
    handler: Mapping[str, Any],
    formatters: Mapping[str, Any],
    filters: Mapping[str, Any],
    handlers: Mapping[str, Any],
) -> str | None:
    factory = handler.get("()") or handler.get("class")
    if factory is None:
        return 'no "class" given'
    problem = _class_problem(factory, handler, _HANDLER_KEYS)
    if problem:
        return problem
    formatter = handler.get("formatter")
    if formatter is not None and formatter not in formatters:
        return f'formatter "{formatter}" is not defined in formatters'
    target = handler.get("target")  # a MemoryHandler's target: another handler
    if isinstance(target, str) and "MemoryHandler" in str(factory) and target not in handlers:
        return f'target "{target}" is not defined in handlers'
    return _level_problem(handler.get("level")) or _refs_problem(handler, None, filters)


def _class_problem(
    name: Any, entry: Mapping[str, Any], skip: frozenset[str], *, args: bool = True
) -> str | None:
    """`name` imports and (with `args`) accepts the entry's other keys as arguments."""
    if not isinstance(name, str):
        return None  # a callable given directly (a Python caller's dictConfig)
    try:
        factory = logging.config.BaseConfigurator({}).resolve(name)
    except (ValueError, ImportError) as exc:
        cause = exc.__cause__ or exc
        return f'cannot import "{name}": {cause}'
    if not args or not callable(factory):
        return None
    kwargs = {key: value for key, value in entry.items() if key not in skip}
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as exc:
        return f"{name}: {exc}"
    except ValueError:
        pass  # no signature to check (a builtin)
    return None


def _level_problem(level: Any) -> str | None:
    if level is None or isinstance(level, int):
        return None
    if isinstance(level, str) and isinstance(logging.getLevelName(level.upper()), int):
        return None
    return f"unknown level {level!r}"


def _refs_problem(
    entry: Mapping[str, Any], handlers: Mapping[str, Any] | None, filters: Mapping[str, Any]
) -> str | None:
    for name in entry.get("filters", []):
        if isinstance(name, str) and name not in filters:
            return f'filter "{name}" is not defined in filters'
    if handlers is not None:
        for name in entry.get("handlers", []):
            if name not in handlers:
                return f'handler "{name}" is not defined in handlers'
    return None


def set_role(role: str) -> None:
    """Name this process in every later line: "arbiter", "worker slot=2"."""
    global _role
    _role = role


def reopen() -> None:
    """SIGUSR1: reopen the error log and every file a user's log_config opened (after
    logrotate moved them, lines would go on into the moved file)."""
    if _handler is not None:
        _handler.reopen()
    for handler in _file_handlers():
        if handler.stream is not None:  # (None: delay=True, opened on its first line)
            _reopen(handler, handler._open, handler.baseFilename)


def _reopen(handler: logging.StreamHandler, opener: Callable[[], Any], path: str) -> None:  # type: ignore[type-arg]
    """Swap a handler's stream for the file opened anew. If that fails (permissions
    after a drop of privileges, a full disk), say so and keep the old one: never lose
    the log."""
    try:
        new = opener()
    except OSError as exc:
        logging.getLogger(__name__).error(
            "cannot reopen the log file %s: %s; still writing to the old one", path, exc
        )
        return
    handler.acquire()
    try:
        old, handler.stream = handler.stream, new
        if old is not sys.stderr:
            old.close()
    finally:
        handler.release()


def user_log_files() -> list[str]:
    """The files a user's log_config opened (handed to the user before a privilege drop)."""
    return [handler.baseFilename for handler in _file_handlers()]


def _file_handlers() -> list[logging.FileHandler]:
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    found: dict[int, logging.FileHandler] = {}
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                found[id(handler)] = handler
    return list(found.values())


def stream_fileno() -> int:
    """The fd log lines go to, for faulthandler's traceback dumps."""
    if _handler is not None:
        try:
            return int(_handler.stream.fileno())
        except (AttributeError, OSError, ValueError):
            pass
    return 2


def _utc_formatter() -> logging.Formatter:
    """Times in UTC, marked Z: every process agrees, even when an app (Django's
    TIME_ZONE) changes the process time zone."""
    formatter = logging.Formatter(FORMAT)
    formatter.converter = time.gmtime
    formatter.default_time_format = "%Y-%m-%dT%H:%M:%S"
    formatter.default_msec_format = "%s.%03dZ"
    return formatter
