"""Server hooks: functions from the user's module named by `hooks = "myhooks"`.

The names, arguments and moments are gunicorn's, so a gunicorn user's hooks carry over:

  on_starting(server)          arbiter, before anything is forked
  when_ready(server)           arbiter, once every worker is ready
  post_fork(server, worker)    worker, just after fork (reconnect a database here)
  post_worker_init(worker)     worker, after the app is loaded, before it serves
  worker_exit(server, worker)  worker, as it exits
  on_reload(server)            arbiter, on SIGHUP, before workers are replaced
  on_exit(server)              arbiter, just before it exits

Rules:
1. A hook gets ServerInfo / WorkerInfo, never the Arbiter or Worker: those are free to
   change, and a hook that pokes at their internals would break silently. The info
   objects keep what gunicorn hooks actually use: `.pid`, `.log`, the options.
2. Everything that can be judged at load is refused at load (ConfigError): a module that
   does not import, a hook that is not a function or cannot take its arguments. A typo
   or a gunicorn hook we never call is a WARNING: the server works, the hook does not.
3. A hook that raises at run time is logged at ERROR with its traceback and the server
   carries on (Hooks.call returns False): a failing on_exit must not stop the shutdown,
   and the caller decides whether a failed post_fork is fatal for its worker.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from gunrunner.errors import ConfigError

log = logging.getLogger(__name__)

# Each hook's positional arguments, in gunicorn's order.
_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "on_starting": ("server",),
    "when_ready": ("server",),
    "post_fork": ("server", "worker"),
    "post_worker_init": ("worker",),
    "worker_exit": ("server", "worker"),
    "on_reload": ("server",),
    "on_exit": ("server",),
}
HOOK_NAMES: tuple[str, ...] = tuple(_ARGUMENTS)

# gunicorn hooks gunrunner never calls: the moment does not exist here (pre_exec: no
# re-exec; pre_request: requests are not the arbiter's business) or it is not built yet.
UNSUPPORTED_HOOKS: tuple[str, ...] = (
    "pre_fork",
    "pre_exec",
    "pre_request",
    "post_request",
    "child_exit",
    "worker_int",
    "worker_abort",
    "nworkers_changed",
    "ssl_context",
)

# difflib ratio: 0.8 catches post_frok (0.89), postfork (0.94) and on_start (0.84) but not
# helpers such as reload_config (0.55) or on_stop (0.57).
_TYPO_CUTOFF = 0.8


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What a hook sees of the arbiter: its pid, the options, the target worker count."""

    pid: int
    options: Any  # the frozen Options; Any keeps this module free of the config import
    workers: int
    log: logging.Logger = field(default=logging.getLogger(__name__), repr=False)


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What a hook sees of one worker process: its pid and slot."""

    pid: int
    slot: int
    log: logging.Logger = field(default=logging.getLogger(__name__), repr=False)


class Hooks:
    """The hooks of one module; calling a hook the module does not define is a no-op."""

    def __init__(self, module: str = "", functions: dict[str, Callable[..., object]] | None = None):
        self.module = module
        self._functions = dict(functions or {})

    def defined(self, name: str) -> bool:
        """True if the module defines hook `name`."""
        return name in self._functions

    def call(self, name: str, *args: object) -> bool:
        """Run hook `name`; False (logged at ERROR with the traceback) if it raised."""
        function = self._functions.get(name)
        if function is None:
            return True
        try:
            function(*args)
        except Exception as exc:
            # Exception, not BaseException: SystemExit or KeyboardInterrupt from a hook
            # means stop, as it would anywhere else in the process.
            what = f"{type(exc).__name__}: {exc}"
            log.exception("hook %s (%s) failed: %s", name, self.module, what)
            return False
        return True


def load_hooks(module_name: str | None, app_dir: str | None = None) -> Hooks:
    """Import the hooks module and check its hooks; ConfigError if it cannot be used."""
    if not module_name:
        return Hooks()
    # Like the app loader, app_dir stays on sys.path: a hook that imports a sibling
    # module when it runs (post_fork: `import db`) must find it then, not only now.
    if app_dir and app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    module = _import(module_name, app_dir)
    functions: dict[str, Callable[..., object]] = {}
    for name in HOOK_NAMES:
        if not hasattr(module, name):
            continue
        functions[name] = _checked(module_name, name, getattr(module, name))
    _warn_ignored(module)
    return Hooks(module_name, functions)


def _import(module_name: str, app_dir: str | None) -> ModuleType:
    label = f'hooks: cannot import module "{module_name}"'
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            where = f"app_dir {app_dir!r}" if app_dir else "sys.path"
            raise ConfigError(
                f"{label}: not found (searched from {where}; check the hooks option)",
                key="hooks",
            ) from None
        raise ConfigError(f"{label}: {_failure(exc)}", key="hooks") from None
    except SyntaxError as exc:
        raise ConfigError(
            f"{label}: {type(exc).__name__} at {exc.filename}:{exc.lineno}: {exc.msg}",
            key="hooks",
        ) from None
    except Exception as exc:
        raise ConfigError(f"{label}: {_failure(exc)}", key="hooks") from None


def _failure(exc: BaseException) -> str:
    # The innermost frame outside importlib: the operator's file and line.
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<frozen importlib")
        and not frame.filename.endswith(("importlib/__init__.py", "gunrunner/hooks.py"))
    ]
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}{where}: {exc}"


def _checked(module_name: str, name: str, hook: object) -> Callable[..., object]:
    """The hook itself, or a ConfigError saying why it can never be called right."""
    wants = f"{name} takes ({', '.join(_ARGUMENTS[name])})"
    where = f'hooks: "{module_name}.{name}"'
    if not callable(hook):
        raise ConfigError(
            f"{where} is a {type(hook).__name__}, not a function; {wants}", key="hooks"
        )
    if inspect.iscoroutinefunction(hook):
        # Hooks run synchronously, some before any event loop exists: an async def would
        # return a coroutine that never runs.
        raise ConfigError(f"{where} is async; hooks are plain functions: {wants}", key="hooks")
    try:
        signature = inspect.signature(hook)
    except (TypeError, ValueError):
        return hook  # a builtin or extension callable: nothing to judge by
    try:
        signature.bind(*(object() for _ in _ARGUMENTS[name]))
    except TypeError:
        raise ConfigError(f"{where} has signature {signature}; {wants}", key="hooks") from None
    return hook


def _warn_ignored(module: ModuleType) -> None:
    """WARNING for gunicorn hooks we never call and for names that look like a typo."""
    known = HOOK_NAMES + UNSUPPORTED_HOOKS
    mod = module.__name__
    for name, value in vars(module).items():
        if name.startswith("_") or name in HOOK_NAMES or not callable(value):
            continue
        if name in UNSUPPORTED_HOOKS:
            log.warning("hooks: %s.%s is a gunicorn hook that gunrunner does not call", mod, name)
            continue
        # Only functions defined in the module: `from importlib import reload` is no typo.
        if getattr(value, "__module__", None) != mod:
            continue
        if any(name.startswith(hook + "_") for hook in known):
            continue  # post_fork_db: a helper named after its hook, on purpose
        # Supported names first, two of them: worker_init is as close to worker_exit (0.82)
        # as to post_worker_init (0.81), and the reader knows which one was meant.
        close = difflib.get_close_matches(name, HOOK_NAMES, n=2, cutoff=_TYPO_CUTOFF)
        if close:
            hint = f"did you mean {' or '.join(close)}?"
        else:
            close = difflib.get_close_matches(name, UNSUPPORTED_HOOKS, 1, _TYPO_CUTOFF)
            if not close:
                continue
            hint = f"it looks like gunicorn's {close[0]}, which gunrunner does not call either"
        log.warning("hooks: %s.%s is not a hook name and will not run; %s", mod, name, hint)
