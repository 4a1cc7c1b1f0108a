"""Option value kinds, and the typed spec of one option (options.py declares the options).

Rules:
1. A `Kind` reads a value from text (environment, command line) and from a TOML value,
   and writes it back as TOML. A reader raises TypeError or ValueError for a value it
   does not take; config.py turns that into a ConfigError naming the key and the source.
2. An `OptionSpec` is everything known about one option besides its name and default.
   `option()` stores it in the dataclass field's metadata under `SPEC`; read it with
   `config.spec_of(name)`.
3. `to_toml` of a value, read back by `from_toml`, gives the same value: --print-config
   output loads back to the same options.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The metadata key of a field's OptionSpec.
SPEC = "spec"


@dataclass(frozen=True, slots=True)
class Kind:
    """How an option's values are read from text (env, CLI) and TOML, and written back."""

    expected: str
    from_text: Callable[[str], Any]
    from_toml: Callable[[Any], Any]
    to_toml: Callable[[Any], str]


def _toml_str(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _int_from_toml(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError
    return value


def _float_from_toml(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError
    return float(value)


def _str_from_toml(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


def _bool_from_text(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(text)


def _bool_from_toml(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError
    return value


def _list_from_text(text: str) -> tuple[str, ...]:
    # Env vars hold several values separated by commas: GUNRUNNER_BIND="a:1,b:2".
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _list_from_toml(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise TypeError


def _workers_from_text(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    return int(text)


def _workers_from_toml(value: Any) -> int | str:
    if isinstance(value, str):
        return _workers_from_text(value) if value.strip().lower() == "auto" else _fail(value)
    return _int_from_toml(value)


def _fail(value: Any) -> Any:
    raise ValueError(value)


def _mode_from_text(text: str) -> int:
    # Always octal, as chmod(1) and gunicorn's --umask read it: "660", "0660", "0o660".
    digits = text.strip().lower().removeprefix("0o")
    if not digits or any(c not in "01234567" for c in digits):
        raise ValueError(text)
    return _mode_in_range(int(digits, 8))


def _mode_from_toml(value: Any) -> int:
    # A string only: TOML reads 0o77 and 63 alike, so an integer cannot say whether it
    # was meant in octal, and a decimal 77 taken as a umask would be 0o115 (0o662 files).
    if not isinstance(value, str):
        raise TypeError(value)
    return _mode_from_text(value)


def _mode_in_range(mode: int) -> int:
    if not 0 <= mode <= 0o777:
        raise ValueError(mode)
    return mode


def _optional(kind: Kind) -> Kind:
    """The same kind, where "" (or no value) means "not set"."""
    return Kind(
        expected=kind.expected,
        from_text=lambda text: kind.from_text(text) if text else None,
        from_toml=lambda value: kind.from_toml(value) if value != "" else None,
        to_toml=lambda value: '""' if value is None else kind.to_toml(value),
    )


INT = Kind("an integer", int, _int_from_toml, str)
FLOAT = Kind("a number", float, _float_from_toml, lambda v: repr(float(v)))
STR = Kind("a string", str, _str_from_toml, _toml_str)
BOOL = Kind("true or false", _bool_from_text, _bool_from_toml, lambda v: "true" if v else "false")
STR_LIST = Kind(
    "a string or a list of strings",
    _list_from_text,
    _list_from_toml,
    lambda v: "[" + ", ".join(_toml_str(s) for s in v) + "]",
)
WORKERS = Kind(
    'an integer or "auto"',
    _workers_from_text,
    _workers_from_toml,
    lambda v: _toml_str(v) if isinstance(v, str) else str(v),
)
MODE = Kind(
    'an octal mode from "000" to "777" as a string, like "660"',
    _mode_from_text,
    _mode_from_toml,
    lambda v: f'"{v:04o}"',
)
OPTIONAL_STR = _optional(STR)
OPTIONAL_MODE = _optional(MODE)


@dataclass(frozen=True, kw_only=True, slots=True)
class OptionSpec:
    """One option's kind, help and checks: what the CLI, loader and docs read."""

    help: str
    kind: Kind
    short: str | None = None
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    metavar: str | None = None
    const: str | None = None  # the value of a bare flag (--access-log alone)
    secret: bool = False  # never shown: not by --print-config, errors or repr()
    example: Any = None  # a value conf/gunrunner.toml shows (commented out) when not set

    def expected(self) -> str:
        """What a value must be, for error messages."""
        if self.choices:
            return "one of " + ", ".join(f'"{c}"' for c in self.choices)
        if self.minimum is not None and self.kind is STR_LIST:
            return f"{self.kind.expected} (at least {self.minimum:g})"
        if self.minimum is not None:
            return f"{self.kind.expected} >= {self.minimum:g}"
        return self.kind.expected

    def problem(self, value: Any) -> str | None:
        """Why an already converted `value` is not acceptable, or None when it is."""
        if value is None:
            return None
        if self.choices and value not in self.choices:
            return f"expected {self.expected()}, got {value!r}"
        minimum = self.minimum
        if minimum is None:
            return None
        if isinstance(value, tuple) and len(value) < minimum:
            return f"expected {self.expected()}, got {list(value)!r}"
        if isinstance(value, (int, float)) and (not math.isfinite(value) or value < minimum):
            return f"expected {self.expected()}, got {value!r}"
        return None


def option(
    default: Any,
    *,
    help: str,
    kind: Kind,
    short: str | None = None,
    choices: tuple[str, ...] | None = None,
    minimum: float | None = None,
    metavar: str | None = None,
    const: str | None = None,
    secret: bool = False,
    example: Any = None,
) -> Any:
    """Declare one option: a dataclass field whose OptionSpec drives CLI, TOML, env and docs."""
    spec = OptionSpec(
        help=help,
        kind=kind,
        short=short,
        choices=choices,
        minimum=minimum,
        metavar=metavar,
        const=const,
        secret=secret,
        example=example,
    )
    # The spec's fields are also in the metadata under their own names ("kind", "short",
    # ...), as before the spec existed, until every reader uses config.spec_of().
    legacy = {f.name: getattr(spec, f.name) for f in dataclasses.fields(OptionSpec)}
    return dataclasses.field(default=default, metadata={**legacy, SPEC: spec}, repr=not secret)
