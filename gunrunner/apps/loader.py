"""Import the app named "module:attribute" and find out which interface it speaks.

Rules:
1. "module:factory()" calls the factory with no arguments, as --factory does (gunicorn's
   spelling); arguments inside the parentheses are refused with a hint.
2. An app that takes no positional arguments cannot be a WSGI or ASGI app: it is almost
   always a factory named without --factory, and refused as such at boot, instead of
   answering every request with 500.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import traceback
from typing import Any

from gunrunner.config import Options
from gunrunner.errors import AppLoadError


def load_app(options: Options) -> tuple[Any, str]:
    """Import the app and settle its interface; AppLoadError on failure."""
    if not options.app:
        raise AppLoadError("no app given: pass module:attribute, or set app in the config file")
    app = import_app(options.app, app_dir=options.app_dir, factory=options.factory)
    interface = options.interface
    if interface == "auto":
        interface = detect_interface(app)
    return app, interface


def import_app(target: str, *, app_dir: str = ".", factory: bool = False) -> Any:
    """The object `target` names; every failure is an AppLoadError with the reason."""
    module_name, sep, attrs = target.partition(":")
    if not sep or not module_name or not attrs:
        raise AppLoadError(
            f'app "{target}" must be given as module:attribute, e.g. myproject.wsgi:application'
        )
    if attrs.endswith(")") and "(" in attrs:
        attrs, _, arguments = attrs.partition("(")
        if arguments != ")":
            raise AppLoadError(
                f'app "{target}": arguments to the factory are not supported; '
                f'use a factory that takes none, e.g. "{module_name}:{attrs}()"'
            )
        factory = True
    if app_dir and app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppLoadError(
                f'cannot import module "{module_name}": not found '
                f"(searched from app_dir {app_dir!r}; check the name and --app-dir)"
            ) from None
        raise AppLoadError(_import_failure(module_name)) from None
    except BaseException:
        raise AppLoadError(_import_failure(module_name)) from None
    obj: Any = module
    for attr in attrs.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise AppLoadError(f'module "{module_name}" has no attribute "{attrs}"') from None
    if factory:
        try:
            obj = obj()
        except BaseException:
            raise AppLoadError(
                f'app factory "{target}" failed:\n{traceback.format_exc().rstrip()}'
            ) from None
    if not callable(obj):
        raise AppLoadError(f'app "{target}" is not callable (got {type(obj).__name__})')
    if _takes_no_arguments(obj):
        what = "returned by the factory" if factory else "named"
        hint = (
            "the factory must return the app itself"
            if factory
            else f'it looks like an app factory: pass --factory, or write "{target}()"'
        )
        raise AppLoadError(
            f'app "{target}": the object {what} takes no arguments, so it is neither a '
            f"WSGI app (environ, start_response) nor an ASGI app (scope, receive, send); {hint}"
        )
    return obj


def _takes_no_arguments(obj: Any) -> bool:
    """True for a callable that cannot accept a single positional argument."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return False  # a builtin or extension type: no signature to judge by
    if inspect.isclass(obj) and params and params[0].name == "self":
        params = params[1:]  # the unbound __init__
    return not any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params
    )


def _import_failure(module_name: str) -> str:
    # The traceback minus the importlib frames: the operator needs their file and line.
    exc = sys.exc_info()[1]
    assert exc is not None
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<frozen importlib")
        and not frame.filename.endswith(("importlib/__init__.py", "gunrunner/apps/loader.py"))
    ]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    lines += traceback.format_exception_only(type(exc), exc)
    tb = "".join(lines).rstrip()
    return f'error while importing "{module_name}":\n{tb}'


def detect_interface(app: Any) -> str:
    """ "wsgi", "asgi" (3) or "asgi2", from the shape of the callable."""
    if inspect.isclass(app):
        # An ASGI 2 app is often a class: instantiated with the scope, then awaited.
        return "asgi2"
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else type(app).__call__
    if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(app):
        return "asgi"
    try:
        params = inspect.signature(app).parameters.values()
    except (TypeError, ValueError):
        return "wsgi"
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return "wsgi"
    return {1: "asgi2", 3: "asgi"}.get(len(positional), "wsgi")
