"""import_app(): every failure is an AppLoadError that says why; detect_interface()."""

from __future__ import annotations

import functools
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.validate import validator

import pytest

from gunrunner.apps.loader import detect_interface, import_app
from gunrunner.errors import AppLoadError
from tests.apps import http_apps


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """sys.path and sys.modules as they were, after the test."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write_module(directory: Path, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))


# -- import_app ----------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["tests.apps.http_apps", ":wsgi_app", "tests.apps.http_apps:"])
def test_target_without_module_and_attribute(target: str) -> None:
    """A target that is not module:attribute is refused with the expected form."""
    with pytest.raises(AppLoadError, match="must be given as module:attribute"):
        import_app(target)


@pytest.mark.usefixtures("isolated")
def test_missing_module(tmp_path: Path) -> None:
    """A module that does not exist: "not found", naming the module and app_dir."""
    with pytest.raises(AppLoadError) as caught:
        import_app("no_such_module_for_gunrunner:app", app_dir=str(tmp_path))
    message = str(caught.value)
    assert 'cannot import module "no_such_module_for_gunrunner": not found' in message
    assert str(tmp_path) in message


def test_missing_submodule() -> None:
    """A missing submodule of an existing package is "not found" too."""
    with pytest.raises(AppLoadError, match=re.escape('"tests.apps.no_such_module": not found')):
        import_app("tests.apps.no_such_module:app")


def test_missing_attribute() -> None:
    """A module without the attribute: the error names both."""
    expected = 'module "tests.apps.http_apps" has no attribute "nope"'
    with pytest.raises(AppLoadError, match=re.escape(expected)):
        import_app("tests.apps.http_apps:nope")


def test_not_callable() -> None:
    """An attribute that is not callable is refused, with its type."""
    with pytest.raises(AppLoadError, match="is not callable \\(got bytes\\)"):
        import_app("tests.apps.http_apps:HELLO")


def test_found_app_and_dotted_attribute() -> None:
    """module:attribute and module:attribute.attribute give the object."""
    assert import_app("tests.apps.http_apps:wsgi_app") is http_apps.wsgi_app
    method = import_app("tests.apps.http_apps:Asgi2App.__call__")
    assert method is http_apps.Asgi2App.__call__


@pytest.mark.usefixtures("isolated")
def test_import_raising_shows_traceback(tmp_path: Path) -> None:
    """An exception while importing: the message has the traceback with file, line, error."""
    write_module(
        tmp_path,
        "gr_test_broken_mod",
        """\
        def fail():
            raise ValueError("broken at import time")

        fail()
        """,
    )
    with pytest.raises(AppLoadError) as caught:
        import_app("gr_test_broken_mod:app", app_dir=str(tmp_path))
    message = str(caught.value)
    assert 'error while importing "gr_test_broken_mod"' in message
    assert "Traceback (most recent call last)" in message
    assert "gr_test_broken_mod.py" in message
    assert ", line 2, in fail" in message
    assert "ValueError: broken at import time" in message


@pytest.mark.usefixtures("isolated")
def test_import_traceback_leaves_out_importlib_frames(tmp_path: Path) -> None:
    """The import traceback shows the app's frames, not importlib's (as loader.py intends)."""
    write_module(tmp_path, "gr_test_broken_mod2", 'raise RuntimeError("boom")\n')
    with pytest.raises(AppLoadError) as caught:
        import_app("gr_test_broken_mod2:app", app_dir=str(tmp_path))
    message = str(caught.value)
    assert "RuntimeError: boom" in message
    assert "<frozen importlib" not in message, message
    assert "importlib/__init__.py" not in message, message


@pytest.mark.usefixtures("isolated")
def test_missing_dependency_is_not_reported_as_missing_app(tmp_path: Path) -> None:
    """An app module that imports a missing package: the error names the package."""
    write_module(tmp_path, "gr_test_needs_dep", "import gr_test_absent_dependency\n")
    with pytest.raises(AppLoadError) as caught:
        import_app("gr_test_needs_dep:app", app_dir=str(tmp_path))
    message = str(caught.value)
    assert "gr_test_absent_dependency" in message
    assert 'cannot import module "gr_test_needs_dep": not found' not in message
    assert "Traceback" in message


@pytest.mark.usefixtures("isolated")
def test_system_exit_at_import_is_a_load_error(tmp_path: Path) -> None:
    """A module that calls sys.exit() while importing gives an AppLoadError, not an exit."""
    write_module(tmp_path, "gr_test_exits", "import sys\nsys.exit(3)\n")
    with pytest.raises(AppLoadError, match="SystemExit"):
        import_app("gr_test_exits:app", app_dir=str(tmp_path))


@pytest.mark.usefixtures("isolated")
def test_app_dir_is_searched_first(tmp_path: Path) -> None:
    """app_dir goes on sys.path so that its modules import."""
    write_module(tmp_path, "gr_test_plain", "def app(environ, start_response):\n    return []\n")
    app = import_app("gr_test_plain:app", app_dir=str(tmp_path))
    assert app.__module__ == "gr_test_plain"
    assert sys.path[0] == str(tmp_path)


def test_factory_called() -> None:
    """factory=True calls the attribute and returns what it gives."""
    app = import_app("tests.apps.http_apps:create_wsgi_app", factory=True)
    assert app is http_apps.wsgi_app


@pytest.mark.usefixtures("isolated")
def test_factory_raising_shows_traceback(tmp_path: Path) -> None:
    """A factory that raises: the message has the target and the traceback."""
    write_module(
        tmp_path,
        "gr_test_factory",
        """\
        def create():
            raise LookupError("no database configured")

        def needs_args(config):
            return None

        def gives_none():
            return None
        """,
    )
    with pytest.raises(AppLoadError) as caught:
        import_app("gr_test_factory:create", app_dir=str(tmp_path), factory=True)
    message = str(caught.value)
    assert 'app factory "gr_test_factory:create" failed' in message
    assert "LookupError: no database configured" in message
    assert "Traceback" in message
    with pytest.raises(AppLoadError, match="TypeError"):
        import_app("gr_test_factory:needs_args", app_dir=str(tmp_path), factory=True)
    with pytest.raises(AppLoadError, match="not callable \\(got NoneType\\)"):
        import_app("gr_test_factory:gives_none", app_dir=str(tmp_path), factory=True)


# -- detect_interface ----------------------------------------------------------------------


def wsgi_function(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    return []


async def asgi_function(scope: Any, receive: Any, send: Any) -> None:
    pass


def asgi2_function(scope: Any) -> Any:
    return asgi_function


class AsyncCallable:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


class SyncCallable:
    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        return []


class WithAsyncMethod:
    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        pass


def test_detect_wsgi_function() -> None:
    """A function (environ, start_response) is WSGI."""
    assert detect_interface(wsgi_function) == "wsgi"
    assert detect_interface(http_apps.wsgi_app) == "wsgi"


def test_detect_flask_app() -> None:
    """A Flask app object is WSGI."""
    from tests.apps.flask_app import app

    assert detect_interface(app) == "wsgi"


def test_detect_wsgi_callable_object_and_validator() -> None:
    """An object with a sync __call__(environ, start_response), and a validator wrapper: WSGI."""
    assert detect_interface(SyncCallable()) == "wsgi"
    assert detect_interface(validator(wsgi_function)) == "wsgi"


def test_detect_async_function() -> None:
    """An async function is ASGI 3."""
    assert detect_interface(asgi_function) == "asgi"
    assert detect_interface(http_apps.asgi_app) == "asgi"


def test_detect_async_callable_object() -> None:
    """An object with async __call__, a bound async method, a partial: ASGI 3."""
    assert detect_interface(AsyncCallable()) == "asgi"
    assert detect_interface(WithAsyncMethod().handle) == "asgi"
    assert detect_interface(functools.partial(asgi_function)) == "asgi"


def test_detect_starlette_app() -> None:
    """A Starlette app object is ASGI 3."""
    from tests.apps.starlette_app import app

    assert detect_interface(app) == "asgi"


def test_detect_class_is_asgi2() -> None:
    """A class (instantiated with the scope) is ASGI 2."""
    assert detect_interface(http_apps.Asgi2App) == "asgi2"


def test_detect_one_argument_function_is_asgi2() -> None:
    """A function of the scope alone is ASGI 2."""
    assert detect_interface(asgi2_function) == "asgi2"
