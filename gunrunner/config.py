"""The options (declared once, in options.py) loaded from the platform's variables, TOML,
then GUNRUNNER_* env vars, then the CLI.

Rules:
1. An option is one field of `Options` (options.py): its name is the TOML key,
   `--name-with-dashes` its flag and `GUNRUNNER_NAME` its environment variable.
2. Later sources win: defaults < platform < config file < environment < command line.
   The platform layer is what hosts set for any server: PORT and WEB_CONCURRENCY
   (Heroku, Cloud Run, Render), read as bind 0.0.0.0:PORT and workers.
3. A bad value is a ConfigError naming the key, where it came from and what was expected.
   An unknown key is an error that names the closest option.
4. A renamed option keeps its old name as a deprecated alias (`ALIASES`, old -> new) in
   every source; using it is a warning (`Loaded.deprecations`, logged by
   `log_deprecations` once logging is set up), giving both names in one source an error.
"""

from __future__ import annotations

import difflib
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gunrunner.errors import ConfigError

# cli.py, _docs.py and the tests read the option table through this module too
# (config.FIELDS, config.spec_of, ...): mypy sees these names re-exported.
from gunrunner.options import (
    ALIASES,
    ENV_NOT_OPTIONS,
    ENV_PREFIX,
    FIELDS,
    Options,
    canonical,
    env_of,
    flag_of,
    kind_of,
    spec_of,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

log = logging.getLogger(__name__)
LOGGING_TABLE = "logging"


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
    if source in PLATFORM_VARS:
        return source
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

    A deprecated alias stays under its old name here; `load` renames it. A `[logging]`
    table is not an option: `read_logging_table` reads it.
    """
    return _values(path, _read_toml(path))


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist", source=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", source=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=path) from None
    return raw


# Tables of the config file that are not options: [logging] is a dictConfig (logs.py).
NOT_OPTIONS = frozenset({LOGGING_TABLE})


def _values(path: str, raw: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, raw_value in raw.items():
        if key in NOT_OPTIONS:
            continue
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


def _logging_table(path: str, raw: dict[str, Any]) -> dict[str, Any] | None:
    """The config file's [logging] table (a logging.config.dictConfig), if it has one."""
    table = raw.get(LOGGING_TABLE)
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(
            f'"{LOGGING_TABLE}" must be a table (a logging.config.dictConfig), got '
            f"{_toml_repr(LOGGING_TABLE, table)}",
            key=LOGGING_TABLE,
            source=path,
        )
    return table


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


# Variables that hosting platforms set for whatever server runs (not GUNRUNNER_ options).
PLATFORM_VARS = {"PORT": "bind", "WEB_CONCURRENCY": "workers"}


def read_platform(environ: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """PORT (every interface, as platforms route to the container) and WEB_CONCURRENCY,
    each a layer of its own so an error and --print-config name the variable."""
    layers: list[tuple[str, dict[str, Any]]] = []
    port = environ.get("PORT", "").strip()
    if port:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"PORT: expected a TCP port (1 to 65535), got {port!r}",
                key="bind",
                source="environment",
            )
        layers.append(("PORT", {"bind": (f"0.0.0.0:{int(port)}",)}))
    concurrency = environ.get("WEB_CONCURRENCY", "").strip()
    if concurrency:
        try:
            workers = convert_text("workers", concurrency, "WEB_CONCURRENCY")
        except ConfigError as exc:  # (said as the environment's, like GUNRUNNER_ ones)
            raise ConfigError(exc.detail, key="workers", source="environment") from None
        layers.append(("WEB_CONCURRENCY", {"workers": workers}))
    return layers


@dataclass(frozen=True, slots=True)
class Loaded:
    """The merged options, where each value came from, and the file that was read.

    `deprecations`: one warning per deprecated name used, for `log_deprecations`.
    `logging`: the config file's [logging] table (a dictConfig, see logs.py), or None.
    """

    options: Options
    sources: dict[str, str]
    config_file: str | None
    deprecations: tuple[str, ...] = ()
    logging: dict[str, Any] | None = None
    # Sockets systemd passed (socket activation), as (fd, name): read once at start, as
    # the variables are then removed; kept here for the reloads.
    activated: tuple[tuple[int, str], ...] = ()


ACTIVATION = "systemd socket activation"


def load(
    cli_values: Mapping[str, Any],
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    activated: tuple[tuple[int, str], ...] = (),
) -> Loaded:
    """Merge defaults < platform < config file < environment < command line."""
    environ = os.environ if environ is None else environ
    if config_file is None:
        config_file = environ.get("GUNRUNNER_CONFIG") or None
    layers: list[tuple[str, Mapping[str, Any]]] = list(read_platform(environ))
    logging_table = None
    if config_file:
        raw = _read_toml(config_file)
        layers.append((config_file, _values(config_file, raw)))
        logging_table = _logging_table(config_file, raw)
    layers.append(("environment", read_env(environ)))
    if activated:
        # What systemd bound is what the unit file means to serve; only a --bind on the
        # command line (where fd://NAME picks activated sockets by name) overrides it.
        layers.append((ACTIVATION, {"bind": tuple(f"fd://{fd}" for fd, _ in activated)}))
    layers.append(("command line", cli_values))
    merged: dict[str, Any] = {}
    sources = dict.fromkeys(FIELDS, "default")
    deprecations: list[str] = []
    for source, values in layers:
        for name, value in _renamed(values, source, deprecations).items():
            merged[name] = value
            sources[name] = source
    if "bind" in merged:
        merged["bind"] = _named_fds(merged["bind"], activated, sources["bind"])
    options = Options(**merged)
    return Loaded(options, sources, config_file, tuple(deprecations), logging_table, activated)


def _named_fds(
    binds: tuple[str, ...], activated: tuple[tuple[int, str], ...], source: str
) -> tuple[str, ...]:
    """fd://NAME: the activated socket of that FileDescriptorName, as fd://N."""
    fds = {name: fd for fd, name in activated}
    out = []
    for bind in binds:
        name = bind[len("fd://") :] if bind.startswith("fd://") else ""
        if name and not name.isdigit():
            if name not in fds:
                passed = ", ".join(sorted(fds)) or "none (no socket activation)"
                raise ConfigError(
                    f"bind {bind}: no socket named {name!r} was passed by systemd "
                    f"(FileDescriptorName=); names passed: {passed}",
                    key="bind",
                    source=source,
                )
            out.append(f"fd://{fds[name]}")
        else:
            out.append(bind)
    return tuple(out)


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
    if loaded.logging is not None:
        lines.append(f"# [{LOGGING_TABLE}] table (a dictConfig) read from {loaded.config_file}")
    return "\n".join(lines) + "\n"


def apply_umask(options: Options) -> int | None:
    """Set the process umask from `umask`, once at start; return the old one (None: unset).

    Called before the log file, the listeners and the pid file are created, so that all
    of them, and whatever the workers create, get it.
    """
    if options.umask is None:
        return None
    return os.umask(options.umask)
