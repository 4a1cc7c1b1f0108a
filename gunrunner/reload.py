"""Dev reload: watch the app's files with watchfiles, in a process of its own.

Why a process: watchfiles' Rust notifier runs OS threads, and the arbiter must have no
threads when it forks workers. The watcher is forked once; each batch of changes is one
message on a pipe to the arbiter (a NUL-terminated, newline-separated list of paths),
and the arbiter restarts the workers. The watcher exits when the arbiter is gone.

watchfiles debounces: a burst of events within `debounce` ms (an editor's save, a
`git checkout`) arrives as one batch, so one save is one restart.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePath

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
