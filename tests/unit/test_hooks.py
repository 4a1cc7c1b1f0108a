"""load_hooks() and Hooks.call(): real hook modules written to tmp_path, no mocks."""

from __future__ import annotations

import dataclasses
import logging
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gunrunner.errors import ConfigError
from gunrunner.hooks import HOOK_NAMES, Hooks, ServerInfo, WorkerInfo, load_hooks

SERVER = ServerInfo(pid=100, options=None, workers=4)
WORKER = WorkerInfo(pid=101, slot=2)
# The positional arguments each hook gets, as the arbiter and worker will pass them.
ARGS: dict[str, tuple[object, ...]] = {
    "on_starting": (SERVER,),
    "when_ready": (SERVER,),
    "post_fork": (SERVER, WORKER),
    "post_worker_init": (WORKER,),
    "worker_exit": (SERVER, WORKER),
    "on_reload": (SERVER,),
    "on_exit": (SERVER,),
}

Writer = Callable[[str], str]


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Writer]:
    """Write a hooks module under a fresh name; sys.path and sys.modules restored after."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)

    def writer(source: str) -> str:
        name = f"hooks_{uuid.uuid4().hex[:12]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    yield writer
    for name in set(sys.modules) - before:
        del sys.modules[name]


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Any:
    """caplog for gunrunner.hooks, even after logs.configure() stopped propagation."""
    monkeypatch.setattr(logging.getLogger("gunrunner"), "propagate", True)
    caplog.set_level(logging.DEBUG, logger="gunrunner.hooks")
    return caplog


def load(write: Writer, tmp_path: Path, source: str) -> tuple[str, Hooks]:
    name = write(source)
    return name, load_hooks(name, app_dir=str(tmp_path))


# -- calling -------------------------------------------------------------------------------


@pytest.mark.parametrize("module_name", [None, ""])
def test_no_module_every_call_is_a_no_op(module_name: str | None) -> None:
    hooks = load_hooks(module_name)
    for name in HOOK_NAMES:
        assert not hooks.defined(name)
        assert hooks.call(name, *ARGS[name]) is True


def test_each_hook_gets_its_arguments(write: Writer, tmp_path: Path, records: Any) -> None:
    """Every hook is called with gunicorn's arguments; .log and .pid work as there."""
    name, hooks = load(
        write,
        tmp_path,
        """
        CALLS = []
        def on_starting(server): CALLS.append(("on_starting", server))
        def when_ready(server): CALLS.append(("when_ready", server))
        def post_fork(server, worker):
            worker.log.info("worker spawned (pid: %s)", worker.pid)
            CALLS.append(("post_fork", server, worker))
        def post_worker_init(worker): CALLS.append(("post_worker_init", worker))
        def worker_exit(server, worker): CALLS.append(("worker_exit", server, worker))
        def on_reload(server): CALLS.append(("on_reload", server))
        def on_exit(server):
            server.log.info("bye from %s", server.pid)
            CALLS.append(("on_exit", server))
        """,
    )
    assert tuple(ARGS) == HOOK_NAMES
    for hook in HOOK_NAMES:
        assert hooks.defined(hook)
        assert hooks.call(hook, *ARGS[hook]) is True
    calls = sys.modules[name].CALLS
    assert calls == [(hook, *ARGS[hook]) for hook in HOOK_NAMES]
    assert [r.getMessage() for r in records.records] == [
        "worker spawned (pid: 101)",
        "bye from 100",
    ]
    assert {r.name for r in records.records} == {"gunrunner.hooks"}


def test_undefined_hooks_are_no_ops(write: Writer, tmp_path: Path) -> None:
    _, hooks = load(write, tmp_path, "def on_exit(server): pass\n")
    assert hooks.defined("on_exit")
    assert not hooks.defined("post_fork")
    assert hooks.call("post_fork", SERVER, WORKER) is True


def test_raising_hook_logs_error_with_traceback(
    write: Writer, tmp_path: Path, records: Any
) -> None:
    name, hooks = load(
        write,
        tmp_path,
        """
        def post_fork(server, worker):
            raise ValueError("database unreachable")
        def post_worker_init(worker):
            pass
        """,
    )
    assert hooks.call("post_fork", SERVER, WORKER) is False
    assert hooks.call("post_worker_init", WORKER) is True  # the next hook still runs
    [record] = records.records
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        f"hook post_fork ({name}) failed: ValueError: database unreachable"
    )
    assert record.exc_info is not None
    assert "Traceback (most recent call last)" in records.text
    assert f"{name}.py" in records.text
    assert 'raise ValueError("database unreachable")' in records.text


def test_system_exit_from_a_hook_is_not_swallowed(write: Writer, tmp_path: Path) -> None:
    _, hooks = load(write, tmp_path, "def on_exit(server):\n    raise SystemExit(3)\n")
    with pytest.raises(SystemExit):
        hooks.call("on_exit", SERVER)


# -- refused at load -----------------------------------------------------------------------


def test_missing_module(tmp_path: Path, write: Writer) -> None:
    with pytest.raises(ConfigError) as caught:
        load_hooks("no_such_hooks_module_for_gunrunner", app_dir=str(tmp_path))
    message = str(caught.value)
    assert message.startswith("config error: hooks: ")
    assert '"no_such_hooks_module_for_gunrunner": not found' in message
    assert str(tmp_path) in message
    assert caught.value.key == "hooks"


def test_failing_import_names_the_exception_file_and_line(write: Writer, tmp_path: Path) -> None:
    name = write("import os\nimport no_such_dependency_for_gunrunner\n")
    with pytest.raises(ConfigError) as caught:
        load_hooks(name, app_dir=str(tmp_path))
    message = str(caught.value)
    assert f'hooks: cannot import module "{name}"' in message
    assert "ModuleNotFoundError" in message
    assert "no_such_dependency_for_gunrunner" in message
    assert f"{tmp_path / name}.py:2" in message


def test_syntax_error_names_file_and_line(write: Writer, tmp_path: Path) -> None:
    name = write("def on_starting(server):\n    pass\n\ndef post_fork(server, worker)\n")
    with pytest.raises(ConfigError) as caught:
        load_hooks(name, app_dir=str(tmp_path))
    message = str(caught.value)
    assert f'hooks: cannot import module "{name}"' in message
    assert f"SyntaxError at {tmp_path / name}.py:4" in message


def test_not_callable_hook_is_refused(write: Writer, tmp_path: Path) -> None:
    name = write('post_fork = "reconnect"\n')
    with pytest.raises(ConfigError) as caught:
        load_hooks(name, app_dir=str(tmp_path))
    assert str(caught.value) == (
        f'config error: hooks: "{name}.post_fork" is a str, not a function; '
        "post_fork takes (server, worker)"
    )


@pytest.mark.parametrize(
    ("source", "wants"),
    [
        ("def post_fork(server): pass", "post_fork takes (server, worker)"),
        ("def on_exit(): pass", "on_exit takes (server)"),
        ("def post_worker_init(server, worker): pass", "post_worker_init takes (worker)"),
        ("def on_starting(*, server): pass", "on_starting takes (server)"),
    ],
)
def test_wrong_arity_is_refused(write: Writer, tmp_path: Path, source: str, wants: str) -> None:
    name = write(source + "\n")
    with pytest.raises(ConfigError, match="signature") as caught:
        load_hooks(name, app_dir=str(tmp_path))
    assert str(caught.value).endswith(wants)
    assert name in str(caught.value)


def test_async_hook_is_refused(write: Writer, tmp_path: Path) -> None:
    name = write("async def when_ready(server): pass\n")
    with pytest.raises(ConfigError, match=r"when_ready.* is async"):
        load_hooks(name, app_dir=str(tmp_path))


def test_flexible_signatures_are_accepted(write: Writer, tmp_path: Path) -> None:
    """Defaults, *args and callable objects bind: only an impossible call is refused."""
    _, hooks = load(
        write,
        tmp_path,
        """
        def post_fork(server, worker, extra=None): pass
        def worker_exit(*args): pass
        on_exit = lambda server, **kwargs: None
        class OnReload:
            def __call__(self, server): pass
        on_reload = OnReload()
        when_ready = print  # a builtin: no signature to check
        """,
    )
    assert all(hooks.defined(n) for n in ("post_fork", "worker_exit", "on_exit", "on_reload"))


# -- warnings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typo", "hint"),
    [
        ("post_frok", "did you mean post_fork?"),
        ("on_start", "did you mean on_starting?"),
        ("worker_init", "did you mean worker_exit or post_worker_init?"),
        ("prefork", "it looks like gunicorn's pre_fork, which gunrunner does not call either"),
    ],
)
def test_misspelt_hook_warns_once(
    write: Writer, tmp_path: Path, records: Any, typo: str, hint: str
) -> None:
    name, hooks = load(write, tmp_path, f"def {typo}(*args): pass\n")
    assert not any(hooks.defined(hook) for hook in HOOK_NAMES)
    [record] = records.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"hooks: {name}.{typo} is not a hook name and will not run; {hint}"
    )


def test_unsupported_gunicorn_hook_warns_once(write: Writer, tmp_path: Path, records: Any) -> None:
    name, _ = load(write, tmp_path, "def pre_fork(server, worker): pass\n")
    [record] = records.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"hooks: {name}.pre_fork is a gunicorn hook that gunrunner does not call"
    )


def test_helpers_and_imports_do_not_warn(write: Writer, tmp_path: Path, records: Any) -> None:
    """Names far from a hook, helpers named after one, and imports are left alone."""
    load(
        write,
        tmp_path,
        """
        from importlib import reload
        WORKERS = 4
        def connect_db(): pass
        def post_fork_db(): pass
        def post_fork(server, worker): connect_db()
        """,
    )
    assert records.records == []


# -- app_dir and the info objects ----------------------------------------------------------


def test_app_dir_stays_on_sys_path_for_imports_inside_hooks(write: Writer, tmp_path: Path) -> None:
    """A hook may import a sibling module when it runs, after load_hooks returned."""
    sibling = write("VALUE = 42\n")
    name, hooks = load(
        write,
        tmp_path,
        f"""
        SEEN = []
        def post_worker_init(worker):
            import {sibling}
            SEEN.append({sibling}.VALUE)
        """,
    )
    assert sys.path[0] == str(tmp_path)
    assert hooks.call("post_worker_init", WORKER) is True
    assert sys.modules[name].SEEN == [42]


def test_info_objects_are_read_only() -> None:
    assert SERVER.log.name == WORKER.log.name == "gunrunner.hooks"
    with pytest.raises(dataclasses.FrozenInstanceError):
        WORKER.pid = 1  # type: ignore[misc]
