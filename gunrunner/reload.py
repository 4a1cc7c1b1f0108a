"""Dev reload: watch the app's files with watchfiles, in a process of its own.

Why a process: watchfiles' Rust notifier runs OS threads, and the arbiter must have no
threads when it forks workers. The watcher is forked once; each batch of changes is one
message on a pipe to the arbiter (a NUL-terminated, newline-separated list of paths),
and the arbiter restarts the workers. The watcher exits when the arbiter is gone.

watchfiles debounces: a burst of events within `debounce` ms (an editor's save, a
`git checkout`) arrives as one batch, so one save is one restart.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib.util
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePath

from gunrunner._fork import fork_child

log = logging.getLogger(__name__)

# Directory names never watched (virtualenvs, caches, VCS), on top of hidden ones.
DEFAULT_EXCLUDES = (
    "__pycache__",
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    "node_modules",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "*.egg-info",
)
DEBOUNCE_MS = 300


class PathFilter:
    """Which changed paths trigger a reload.

    A path counts when its file name matches an include glob and no part of it (relative
    to the watched directory) is hidden, a default exclusion, or matches an exclude glob.
    Exclude globs match a path part ("build", "*.egg-info") or the whole relative path
    ("docs/*").
    """

    def __init__(
        self, roots: Sequence[str], includes: Sequence[str], excludes: Sequence[str]
    ) -> None:
        self.roots = [Path(r).resolve() for r in roots]
        self.includes = tuple(includes)
        self.excludes = tuple(DEFAULT_EXCLUDES) + tuple(excludes)

    def __call__(self, change: object, path: str) -> bool:
        return self.matches(path)

    def matches(self, path: str) -> bool:
        pure = PurePath(path)
        if not any(fnmatch.fnmatch(pure.name, glob) for glob in self.includes):
            return False
        relative = self._relative(pure)
        for part in relative.parts:
            if part.startswith(".") or any(fnmatch.fnmatch(part, g) for g in self.excludes):
                return False
        text = relative.as_posix()
        return not any(fnmatch.fnmatch(text, glob) for glob in self.excludes)

    def _relative(self, path: PurePath) -> PurePath:
        for root in self.roots:
            try:
                return path.relative_to(root)
            except ValueError:
                continue
        return PurePath(path.name)


def encode_changes(paths: Iterable[str]) -> bytes:
    return "\n".join(sorted(paths)).encode("utf-8", "surrogateescape") + b"\0"


def decode_changes(buffer: bytearray) -> list[list[str]]:
    """Take every complete message out of `buffer`; return their path lists."""
    batches: list[list[str]] = []
    while True:
        end = buffer.find(b"\0")
        if end < 0:
            return batches
        message = bytes(buffer[:end]).decode("utf-8", "surrogateescape")
        del buffer[: end + 1]
        batches.append([line for line in message.split("\n") if line])


def run_watcher(
    dirs: Sequence[str], includes: Sequence[str], excludes: Sequence[str], fd: int, parent: int
) -> int:
    """The watcher process's main loop: report batches of changes until the parent dies."""
    import watchfiles

    roots = [d for d in dirs if os.path.isdir(d)]
    path_filter = PathFilter(roots, includes, excludes)
    for changes in watchfiles.watch(
        *roots,
        watch_filter=path_filter,
        debounce=DEBOUNCE_MS,
        rust_timeout=1000,
        yield_on_timeout=True,
        raise_interrupt=False,
    ):
        if os.getppid() != parent:
            return 0
        if not changes:
            continue
        try:
            os.write(fd, encode_changes({path for _, path in changes}))
        except OSError:
            return 0  # the arbiter closed its end: it is stopping
    return 0


class Watcher:
    """The arbiter's handle on the watcher process: start it, read its changes, reap it."""

    def __init__(self, dirs: Sequence[str], includes: Sequence[str], excludes: Sequence[str]):
        self.dirs: list[str] = []
        for directory in dirs:
            path = os.path.abspath(directory)
            if path not in self.dirs:
                self.dirs.append(path)
        self.includes = tuple(includes)
        self.excludes = tuple(excludes)
        self.pid = 0
        self.fd = -1
        self._buffer = bytearray()
        self._retry_at = 0.0

    def start(self, in_child: Callable[[], None], parent: int, signals: Iterable[int]) -> None:
        """Fork the watcher unless it runs; `in_child` drops the arbiter's state in it.

        `signals` (the arbiter's handled ones) are blocked around fork, as for a worker.
        """
        if self.pid or time.monotonic() < self._retry_at:
            return
        read_fd, write_fd = os.pipe()

        def child(unblock: Callable[[], None]) -> int:  # pragma: no cover - the watcher
            os.close(read_fd)
            in_child()
            unblock()
            return run_watcher(self.dirs, self.includes, self.excludes, write_fd, parent)

        try:
            pid = fork_child(os.fork, signals, "reload watcher", child)
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            self._retry_at = time.monotonic() + 5.0
            log.error(
                "cannot fork the reload watcher: [Errno %d] %s; retrying in 5s",
                exc.errno,
                exc.strerror,
            )
            return
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self.pid = pid
        self.fd = read_fd
        log.info(
            "reload: watching %s for %s (watcher pid %d)",
            ", ".join(self.dirs),
            " ".join(self.includes),
            pid,
        )

    def read(self) -> list[str]:
        """Paths (relative to the cwd) changed since the last call; their bytecode is gone."""
        if self.fd < 0:
            return []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                break
            self._buffer += data
        paths = {path for batch in decode_changes(self._buffer) for path in batch}
        for path in paths:
            _drop_bytecode(path)
        return sorted(os.path.relpath(p) for p in paths)

    def signal(self, sig: int) -> None:
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def close_fd(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def exited(self, how: str, *, restart: bool) -> None:
        """The watcher was reaped; start a new one in a second unless we are stopping."""
        self.close_fd()
        self.pid = 0
        if restart:
            log.warning("reload watcher %s; restarting it in 1s", how)
            self._retry_at = time.monotonic() + 1.0


def _drop_bytecode(path: str) -> None:
    """Delete the cached bytecode of a changed .py file.

    The .pyc check compares the source's mtime in whole seconds and its size: a second
    save within the same second, of the same size, would be served from stale bytecode.
    """
    if not path.endswith(".py"):
        return
    with contextlib.suppress(OSError, ValueError, NotImplementedError):
        os.unlink(importlib.util.cache_from_source(path))
