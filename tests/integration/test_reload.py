"""--reload end to end: a real project in tmp_path, real edits, a real watcher process.

Each test writes `app.py` into a temp directory, runs gunrunner there with --reload and
edits files the way an editor does (a temp file, then os.replace). The watcher is a child
of the arbiter; its pid is read from the log and remembered for the leftover check.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Server, process_state, running, wait_until
from tests.integration.test_process import (
    assert_gone,
    get,
    listen_inodes,
    read_response,
    reap_orphan,
    subreaper,
)

# Workers write __pycache__ as on a developer's machine, whatever this shell says.
ENV = {"PYTHONDONTWRITEBYTECODE": ""}

WSGI_APP = """\
import os

VERSION = {version!r}


def app(environ, start_response):
    body = f"{{VERSION}} {{os.getpid()}}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

ASGI_APP = """\
import os

VERSION = {version!r}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({{"type": "lifespan.startup.complete"}})
            elif message["type"] == "lifespan.shutdown":
                await send({{"type": "lifespan.shutdown.complete"}})
                return
    body = f"{{VERSION}} {{os.getpid()}}".encode()
    headers = [(b"content-type", b"text/plain")]
    await send({{"type": "http.response.start", "status": 200, "headers": headers}})
    await send({{"type": "http.response.body", "body": body}})
"""

APPS = {"wsgi": WSGI_APP, "asgi": ASGI_APP}
SLOW_IMPORT = "import time\n\ntime.sleep(1.5)  # a slow import: new workers boot for 1.5 s\n"
WATCHER = re.compile(r"reload: watching (.*) for (.*) \(watcher pid (\d+)\)")
RESTARTING = "restarting the workers"
COMPLETE = r"restart complete: (\d+) workers serving"


# -- helpers (test_restart.py imports some) ---------------------------------------------


def app_source(version: str, kind: str = "wsgi") -> str:
    return APPS[kind].format(version=version)


def save(path: Path, text: str) -> None:
    """Write `path` as an editor does: a temp file, then os.replace (never half-written).

    The new mtime is at least a second past the old one, so that Python's bytecode cache
    (which compares whole seconds and the size) never mistakes the new source for the old.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    mtime = time.time()
    with contextlib.suppress(FileNotFoundError):
        mtime = max(mtime, path.stat().st_mtime + 1.0)
    os.utime(tmp, (mtime, mtime))
    os.replace(tmp, path)


def remember_logged_pids(server: Server) -> None:
    """Every worker and watcher the log names joins the leftover check."""
    log = server.log()
    server.seen_pids.update(int(p) for p in re.findall(r"started worker (\d+)", log))
    server.seen_pids.update(int(m.group(3)) for m in WATCHER.finditer(log))


@contextlib.contextmanager
def serving(*args: str, **kwargs: object) -> Iterator[Server]:
    """running(), and every pid the log ever named is checked for leftovers at the end."""
    with running(*args, **kwargs) as server:
        try:
            yield server
        finally:
            remember_logged_pids(server)


def reload_server(
    project: Path, workers: int = 1, ready: bool = True
) -> contextlib.AbstractContextManager[Server]:
    """serving() app.py's app with --reload and `workers`, in the directory `project`."""
    return serving(
        "app:app",
        "--reload",
        "--workers",
        str(workers),
        cwd=project,
        env=ENV,
        ready=workers if ready else None,
    )


def watchers(server: Server) -> list[int]:
    """Watcher pids the log announced so far, in order (remembered for the final check)."""
    pids = [int(m.group(3)) for m in WATCHER.finditer(server.log())]
    server.seen_pids.update(pids)
    return pids


def worker_pids(server: Server) -> set[int]:
    """Children of the arbiter that are not the watcher."""
    return set(server.workers()) - set(watchers(server))


def inotify_watches(pid: int) -> int:
    """How many inotify watches process `pid` holds (from /proc/PID/fdinfo)."""
    count = 0
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                    count += Path(f"/proc/{pid}/fdinfo/{fd}").read_text().count("inotify wd:")
    return count


def watched_dirs(*roots: Path) -> int:
    """Directories under `roots` (themselves included) the watcher will have to watch."""
    return sum(
        1 + sum(1 for p in root.rglob("*") if p.is_dir() and "__pycache__" not in p.parts)
        for root in roots
    )


def wait_watching(server: Server, *roots: Path, nth: int = 1) -> int:
    """Wait for the `nth` watcher to watch every directory under `roots`; its pid."""
    match = server.wait_for(WATCHER.pattern, count=nth)
    pid = int(match.group(3))
    server.seen_pids.add(pid)
    wanted = watched_dirs(*roots)
    assert wait_until(lambda: inotify_watches(pid) >= wanted, 10.0), (
        f"watcher {pid} has {inotify_watches(pid)} inotify watches, wanted {wanted}\n{server.log()}"
    )
    return pid


def fetch(server: Server) -> tuple[str, int]:
    """One GET on a fresh connection: (version, pid of the worker that answered)."""
    status, body = get(server)
    assert status == 200, body
    version, pid = body.decode().split()
    return version, int(pid)


def restarts(server: Server) -> int:
    return server.log().count(RESTARTING)


def wait_restarted(
    server: Server, count: int, old: set[int], workers: int, complete: int | None = None
) -> set[int]:
    """Wait for reload number `count` (restart `complete`, by default the same number) to
    complete and the `old` workers to be gone; return the new workers' pids."""
    server.wait_for(RESTARTING, count=count)
    server.wait_for(COMPLETE, count=count if complete is None else complete)
    for pid in old:
        assert_gone(pid, 10.0)
    assert wait_until(lambda: len(worker_pids(server)) == workers, 10.0), server.log()
    new = worker_pids(server)
    assert not new & old
    return new


def assert_all_serve(server: Server, version: str, pids: set[int], requests: int = 10) -> None:
    """`requests` GETs on fresh connections: each answered with `version` by one of `pids`."""
    for _ in range(requests):
        got, pid = fetch(server)
        assert (got, pid in pids) == (version, True), (got, pid, pids, server.log())


def assert_no_restart(server: Server, before: int, quiet: float = 1.5) -> None:
    """No new "restarting the workers" line for `quiet` seconds."""
    assert not wait_until(lambda: restarts(server) > before, quiet), server.log()


def project(tmp_path: Path, version: str = "v1", kind: str = "wsgi") -> Path:
    root = tmp_path / "project"
    root.mkdir()
    save(root / "app.py", app_source(version, kind))
    return root


# -- a save restarts the workers --------------------------------------------------------


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_saving_the_app_restarts_the_workers_and_serves_the_new_version(
    tmp_path: Path, kind: str
) -> None:
    """A save of app.py: one "app.py changed" restart, new workers serve the new code."""
    root = project(tmp_path, "v1", kind)
    with reload_server(root, workers=2) as server:
        wait_watching(server, root)
        old = worker_pids(server)
        assert len(old) == 2
        assert_all_serve(server, "v1", old)
        save(root / "app.py", app_source("v2", kind))
        server.wait_for(r"reload: app\.py changed; restarting the workers")
        new = wait_restarted(server, 1, old, workers=2)
        assert_all_serve(server, "v2", new)
        assert_no_restart(server, 1)  # one save, one restart


@pytest.mark.parametrize("writes", [1, 3])
def test_one_in_place_save_is_one_restart(tmp_path: Path, writes: int) -> None:
    """An in-place save (truncate, write, chmod), even `writes` back to back: one restart."""
    root = project(tmp_path)
    with reload_server(root, workers=2) as server:
        wait_watching(server, root)
        old = worker_pids(server)
        app = root / "app.py"
        for n in range(writes):
            mtime = app.stat().st_mtime + 1.0
            app.write_text(app_source(f"v{n + 2}"))
            os.utime(app, (mtime, mtime))
            app.chmod(0o644)
        new = wait_restarted(server, 1, old, workers=2)
        assert_all_serve(server, f"v{writes + 1}", new)
        assert_no_restart(server, 1)


def test_a_burst_of_saved_files_is_one_restart(tmp_path: Path) -> None:
    """Seven modules saved at once (a checkout): one restart, the log names 5 "and 2 more"."""
    root = project(tmp_path)
    with reload_server(root, workers=2) as server:
        wait_watching(server, root)
        old = worker_pids(server)
        for name in "abcdefg":
            save(root / f"{name}.py", f"NAME = {name!r}\n")
        server.wait_for(
            r"reload: a\.py, b\.py, c\.py, d\.py, e\.py and 2 more changed; restarting the workers"
        )
        wait_restarted(server, 1, old, workers=2)
        assert_no_restart(server, 1)


@pytest.mark.timeout(60)
def test_a_save_while_new_workers_boot_supersedes_them(tmp_path: Path) -> None:
    """A 2nd save while the 1st save's workers still import: the latest code serves."""
    root = tmp_path / "project"
    root.mkdir()
    save(root / "app.py", SLOW_IMPORT + app_source("v1"))
    with reload_server(root, workers=2) as server:
        wait_watching(server, root)
        old = worker_pids(server)
        save(root / "app.py", SLOW_IMPORT + app_source("v2"))
        server.wait_for(r"started worker \d+ \(slot 1\)", count=2)  # v2 is booting
        save(root / "app.py", SLOW_IMPORT + app_source("v3"))
        new = wait_restarted(server, 2, old, workers=2, complete=1)
        assert_all_serve(server, "v3", new)
        started = {int(p) for p in re.findall(r"started worker (\d+)", server.log())}
        assert len(started) == 6, server.log()  # 2 first, 2 superseded, 2 serving
        for pid in started - new:
            assert_gone(pid, 10.0)
        assert_no_restart(server, 2, quiet=0.5)
        assert server.log().count("restart complete") == 1, server.log()


@pytest.mark.timeout(60)
def test_two_saves_within_one_second_serve_the_latest_code(tmp_path: Path) -> None:
    """Two same-size saves in one second: the second restart serves the second save."""
    root = project(tmp_path, "v0")
    app = root / "app.py"
    with reload_server(root) as server:
        wait_watching(server, root)
        for attempt in range(1, 4):
            # Start at the top of a second, so that both saves share it.
            assert wait_until(lambda: time.time() % 1.0 < 0.05, 1.5)
            first, second = f"a{attempt}", f"b{attempt}"
            app.write_text(app_source(first))
            first_mtime = app.stat().st_mtime
            server.wait_for(COMPLETE, count=2 * attempt - 1)  # a new worker imported it
            app.write_text(app_source(second))
            same_second = int(app.stat().st_mtime) == int(first_mtime)
            server.wait_for(COMPLETE, count=2 * attempt)
            assert wait_until(lambda: len(worker_pids(server)) == 1, 10.0)
            if same_second:
                break
        else:
            pytest.fail("could not save twice within one second")
        current = worker_pids(server)
        assert_all_serve(server, second, current, requests=3)


# -- broken code: the running workers keep serving --------------------------------------

BROKEN = {
    "syntax-error": (
        "def app(:\n    pass\n",
        [r'File "{app}", line 1\n', r"SyntaxError: "],
    ),
    "import-error": (
        "import os\n\nraise RuntimeError('boom at import')\n",
        [r'File "{app}", line 3, in <module>', r"RuntimeError: boom at import"],
    ),
    "no-app-attribute": (
        "VERSION = 'v2'\napplication = None\n",
        [r'module "app" has no attribute "app"'],
    ),
}


@pytest.mark.parametrize("broken", list(BROKEN))
def test_broken_save_keeps_the_old_workers_serving_until_fixed(tmp_path: Path, broken: str) -> None:
    """A broken save: its error logged once, the old workers serve on; a fix reloads."""
    source, errors = BROKEN[broken]
    root = project(tmp_path)
    app = (root / "app.py").resolve()
    with reload_server(root, workers=2) as server:
        wait_watching(server, root)
        old = worker_pids(server)
        save(root / "app.py", source)
        server.wait_for(
            r"the new workers failed to boot; the running workers keep serving the previous "
            r"code; fix the code and save to reload:\n"
        )
        # The successors that failed are reaped; the same two workers serve the old code.
        assert wait_until(lambda: worker_pids(server) == old, 10.0), server.log()
        assert server.log().count("failed to boot") == 1, server.log()
        for error in errors:
            pattern = error.format(app=re.escape(str(app)))
            assert len(re.findall(pattern, server.log())) == 1, (pattern, server.log())
        assert_all_serve(server, "v1", old)

        save(root / "app.py", app_source("v2"))
        new = wait_restarted(server, 2, old, workers=2, complete=1)
        assert_all_serve(server, "v2", new)
        assert server.log().count("failed to boot") == 1, server.log()


def test_broken_first_boot_waits_for_a_change_then_serves(tmp_path: Path) -> None:
    """Broken from the start: no exit, "waiting for a change"; a fix serves queued clients."""
    root = tmp_path / "project"
    root.mkdir()
    save(root / "app.py", "def app(:\n")
    app = (root / "app.py").resolve()
    with reload_server(root, workers=2, ready=False) as server:
        server.wait_for(r"workers failed to boot; waiting for a change to retry:\n")
        wait_watching(server, root)
        assert not wait_until(lambda: server.proc.poll() is not None, 1.0), server.log()
        assert wait_until(lambda: not worker_pids(server), 5.0), server.log()
        log = server.log()
        assert log.count("failed to boot") == 1, log
        assert len(re.findall(rf'File "{re.escape(str(app))}", line 1\n', log)) == 1, log
        assert log.count("SyntaxError") == 1, log

        # A client that connects now waits in the listen queue for the fixed workers.
        with socket.create_connection((server.host, server.port), timeout=15) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            save(root / "app.py", app_source("v1"))
            server.wait_for(r"reload: starting the workers that failed to boot")
            server.wait_for(r"all 2 workers ready")
            status, body = read_response(sock)
        assert status == 200, body
        assert body.decode().split()[0] == "v1"
        assert_all_serve(server, "v1", worker_pids(server))
        assert len(worker_pids(server)) == 2


# -- what is watched -------------------------------------------------------------------


def test_a_new_module_restarts_the_workers(tmp_path: Path) -> None:
    """A new file matching *.py (helpers.py) restarts the workers."""
    root = project(tmp_path)
    with reload_server(root) as server:
        wait_watching(server, root)
        old = worker_pids(server)
        save(root / "helpers.py", "HELPER = 1\n")
        server.wait_for(r"reload: helpers\.py changed; restarting the workers")
        wait_restarted(server, 1, old, workers=1)


IGNORED = {
    "not-a-py-file": ("notes.txt", ()),
    "git": (".git/x.py", ()),
    "hidden-dir": (".cache/k.py", ()),
    "pycache": ("__pycache__/y.py", ()),
    "venv": (".venv/z.py", ()),
    "node-modules": ("node_modules/pkg/w.py", ()),
    "excluded-dir": ("build/gen.py", ("--reload-excludes", "build")),
    "excluded-path-glob": ("docs/conf.py", ("--reload-excludes", "docs/*")),
}


@pytest.mark.parametrize("case", list(IGNORED))
def test_ignored_paths_do_not_restart_and_the_watcher_lives_on(tmp_path: Path, case: str) -> None:
    """A change the globs or exclusions leave out: no restart; an app.py save still reloads."""
    name, args = IGNORED[case]
    root = project(tmp_path)
    (root / name).parent.mkdir(parents=True, exist_ok=True)  # watched from the start
    with serving("app:app", "--reload", *args, cwd=root, env=ENV, ready=1) as server:
        wait_watching(server, root)
        save(root / name, "X = 1\n")
        assert_no_restart(server, 0)
        old = worker_pids(server)
        save(root / "app.py", app_source("v2"))
        server.wait_for(r"reload: app\.py changed; restarting the workers")
        assert_all_serve(server, "v2", wait_restarted(server, 1, old, workers=1))
        assert restarts(server) == 1


def test_reload_includes_replace_the_default_globs(tmp_path: Path) -> None:
    """--reload-includes '*.html': templates/index.html reloads, app.py no longer does."""
    root = project(tmp_path)
    (root / "templates").mkdir()
    with serving(
        "app:app", "--reload", "--reload-includes", "*.html", cwd=root, env=ENV, ready=1
    ) as server:
        wait_watching(server, root)
        assert server.wait_for(WATCHER.pattern).group(2) == "*.html"
        old = worker_pids(server)
        save(root / "templates" / "index.html", "<h1>hello</h1>\n")
        server.wait_for(r"reload: templates/index\.html changed; restarting the workers")
        wait_restarted(server, 1, old, workers=1)
        save(root / "app.py", app_source("v2"))
        assert_no_restart(server, 1)


def test_reload_includes_given_twice_add_up(tmp_path: Path) -> None:
    """--reload-includes '*.py' --reload-includes '*.html': both kinds of file reload."""
    root = project(tmp_path)
    (root / "templates").mkdir()
    args = ("--reload-includes", "*.py", "--reload-includes", "*.html")
    with serving("app:app", "--reload", *args, cwd=root, env=ENV, ready=1) as server:
        wait_watching(server, root)
        old = worker_pids(server)
        save(root / "templates" / "index.html", "<h1>hello</h1>\n")
        old = wait_restarted(server, 1, old, workers=1)
        save(root / "app.py", app_source("v2"))
        server.wait_for(r"reload: app\.py changed; restarting the workers")
        assert_all_serve(server, "v2", wait_restarted(server, 2, old, workers=1))


def test_reload_dirs_watches_another_directory(tmp_path: Path) -> None:
    """--reload-dirs LIB: a save in LIB (outside the app dir) reloads the code from it."""
    root = tmp_path / "project"
    lib = tmp_path / "lib"
    root.mkdir()
    lib.mkdir()
    save(lib / "shared.py", "VERSION = 'v1'\n")
    save(
        root / "app.py",
        f"import sys\nsys.path.insert(0, {str(lib)!r})\n"
        + app_source("v0").replace("VERSION = 'v0'", "from shared import VERSION"),
    )
    with serving(
        "app:app", "--reload", "--reload-dirs", str(lib), cwd=root, env=ENV, ready=1
    ) as server:
        wait_watching(server, root, lib)
        assert server.wait_for(WATCHER.pattern).group(1) == (f"{root.resolve()}, {lib.resolve()}")
        old = worker_pids(server)
        assert_all_serve(server, "v1", old)
        save(lib / "shared.py", "VERSION = 'v2'\n")
        server.wait_for(r"reload: \S*shared\.py changed; restarting the workers")
        assert_all_serve(server, "v2", wait_restarted(server, 1, old, workers=1))


# -- several workers --------------------------------------------------------------------


def test_every_one_of_three_workers_is_replaced(tmp_path: Path) -> None:
    """--workers 3: a save replaces all three; three new pids answer with the new code."""
    root = project(tmp_path)
    with reload_server(root, workers=3) as server:
        wait_watching(server, root)
        old = worker_pids(server)
        assert len(old) == 3
        save(root / "app.py", app_source("v2"))
        server.wait_for(r"restart complete: 3 workers serving")
        new = wait_restarted(server, 1, old, workers=3)
        seen: set[int] = set()
        for _ in range(400):
            version, pid = fetch(server)
            assert version == "v2", server.log()
            seen.add(pid)
            if seen == new:
                break
        assert seen == new, (seen, new)


def test_after_a_reload_a_kept_alive_connection_gets_the_new_code(tmp_path: Path) -> None:
    """The old worker closes idle keep-alive connections at once under --reload (not at
    the end of keepalive_timeout, 30 s here): the client's next request reaches the new
    code on a new connection."""
    import httpx

    root = project(tmp_path)
    with serving(
        "app:app", "--reload", "--workers", "1", "--keepalive-timeout", "30",
        cwd=root, env=ENV, ready=1,
    ) as server:  # fmt: skip
        wait_watching(server, root)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/").text.split()[0] == "v1"
            save(root / "app.py", app_source("v2"))
            server.wait_for(r"restart complete")
            server.wait_for(r"replaced worker \d+ \(slot 0\) exited with code 0", timeout=10)
            assert client.get("/").text.split()[0] == "v2"


# -- stopping, and the watcher process --------------------------------------------------


@pytest.mark.parametrize("broken", [False, True], ids=["serving", "boot-failed"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_stop_exits_0_leaving_no_worker_or_watcher(tmp_path: Path, sig: int, broken: bool) -> None:
    """TERM or INT with --reload (serving, or waiting after a failed boot): exit 0, no leftover."""
    root = project(tmp_path)
    if broken:
        save(root / "app.py", "def app(:\n")
    with reload_server(root, workers=2, ready=not broken) as server:
        if broken:
            server.wait_for(r"waiting for a change to retry")
        watcher = wait_watching(server, root)
        children = set(server.workers())
        assert watcher in children
        server.send_signal(sig)
        assert server.wait_exit(10) == 0, server.log()
        for pid in children:
            assert_gone(pid, 5.0)
        assert process_state(watcher) is None


def test_the_watcher_exits_when_the_arbiter_is_killed(tmp_path: Path) -> None:
    """SIGKILL the arbiter: the orphaned watcher (and the workers) exit within seconds."""
    root = project(tmp_path)
    with subreaper(), reload_server(root, workers=2) as server:
        watcher = wait_watching(server, root)
        workers = worker_pids(server)
        os.kill(server.pid, signal.SIGKILL)
        server.wait_exit(5)
        began = time.monotonic()
        for pid in [watcher, *workers]:
            assert reap_orphan(pid, 5.0 - (time.monotonic() - began)), (
                f"process {pid} still {process_state(pid)} after the arbiter died\n{server.log()}"
            )


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process `pid` holds open."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[len("socket:[") : -1])
    return inodes


def test_a_killed_watcher_is_restarted_and_reload_goes_on(tmp_path: Path) -> None:
    """SIGKILL the watcher: a warning, a new watcher (no listening socket); saves reload."""
    root = project(tmp_path)
    with reload_server(root, workers=2) as server:
        first = wait_watching(server, root)
        assert not socket_inodes(first) & listen_inodes(server.port)
        os.kill(first, signal.SIGKILL)
        server.wait_for(r"WARNING .*reload watcher killed by SIGKILL; restarting it")
        second = wait_watching(server, root, nth=2)
        assert second != first
        assert_gone(first)
        assert not socket_inodes(second) & listen_inodes(server.port)
        old = worker_pids(server)
        assert len(old) == 2
        save(root / "app.py", app_source("v2"))
        assert_all_serve(server, "v2", wait_restarted(server, 1, old, workers=2))
