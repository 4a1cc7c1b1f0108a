"""Which changed files trigger a reload, and the watcher's pipe messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from gunrunner.reload import PathFilter, decode_changes, encode_changes


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("app.py", True),
        ("pkg/views.py", True),
        ("templates/index.html", False),  # not included by default
        (".git/config.py", False),
        ("pkg/__pycache__/views.cpython-311.py", False),
        (".venv/lib/site.py", False),
        ("venv/lib/site.py", False),
        (".hidden/x.py", False),
        ("build/gen.py", False),  # excluded below
        ("docs/conf.py", False),  # excluded by a path glob below
        ("my.egg-info/x.py", False),
    ],
)
def test_default_includes_and_excludes(tmp_path: Path, relative: str, expected: bool) -> None:
    """*.py counts; hidden dirs, caches, virtualenvs and excluded globs do not."""
    path_filter = PathFilter([str(tmp_path)], ["*.py"], ["build", "docs/*"])
    assert path_filter.matches(str(tmp_path / relative)) is expected


def test_extra_includes(tmp_path: Path) -> None:
    """reload_includes adds file globs (templates, config)."""
    path_filter = PathFilter([str(tmp_path)], ["*.py", "*.html"], [])
    assert path_filter.matches(str(tmp_path / "templates" / "index.html"))
    assert not path_filter.matches(str(tmp_path / "notes.txt"))


def test_messages_round_trip_and_split() -> None:
    """Messages are NUL-terminated; partial ones stay in the buffer."""
    buffer = bytearray(encode_changes({"/b.py", "/a.py"}) + encode_changes({"/c.py"}) + b"/d")
    assert decode_changes(buffer) == [["/a.py", "/b.py"], ["/c.py"]]
    assert buffer == bytearray(b"/d")
