"""set_title(): what `ps` shows, with setproctitle and without it.

The title is set in a child process (the venv's python, with a timeout): setting it here
would rename the test runner. The child reads back what ps reads: /proc/self/cmdline
(`ps -o args`, NULs shown as spaces) and /proc/self/comm (`ps -o comm`, `top`).
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gunrunner import proctitle

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

ROOT = Path(__file__).resolve().parents[2]
# Run in the child; BLOCK makes `import setproctitle` fail, as when the extra is missing.
BLOCK = 'import sys; sys.modules["setproctitle"] = None\n'
CHILD = """
import json
from gunrunner.proctitle import set_title
ok = set_title(*{args!r})
with open("/proc/self/cmdline", "rb") as f:
    args = f.read().rstrip(b"\\0").replace(b"\\0", b" ").decode()
with open("/proc/self/comm") as f:
    comm = f.read().rstrip("\\n")
print(json.dumps({{"ok": ok, "args": args, "comm": comm}}))
"""
HAVE_SETPROCTITLE = importlib.util.find_spec("setproctitle") is not None

CASES = [
    (("arbiter",), "gunrunner: arbiter", "gunrunner: arbi"),
    (("worker slot=2",), "gunrunner: worker slot=2", "gunrunner: work"),
    (("worker slot=2", "shop"), "shop: worker slot=2", "shop: worker sl"),
    (("reloader",), "gunrunner: reloader", "gunrunner: relo"),
    (("admin", "api"), "api: admin", "api: admin"),
]


def run_child(args: tuple[str, ...], *, block: bool) -> dict[str, Any]:
    code = (BLOCK if block else "") + CHILD.format(args=args)
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.skipif(not HAVE_SETPROCTITLE, reason="setproctitle is not installed")
@pytest.mark.parametrize(("args", "title", "comm"), CASES)
def test_with_setproctitle(args: tuple[str, ...], title: str, comm: str) -> None:
    """The whole command line becomes the title; comm is its first 15 bytes."""
    shown = run_child(args, block=False)
    assert shown == {"ok": True, "args": title, "comm": comm}


@pytest.mark.parametrize(("args", "title", "comm"), CASES)
def test_without_setproctitle(args: tuple[str, ...], title: str, comm: str) -> None:
    """Only comm changes, to the same 15 bytes; ps -o args still shows python -c ..."""
    shown = run_child(args, block=True)
    assert shown["ok"] is True
    assert shown["comm"] == comm
    assert shown["args"].startswith(f"{sys.executable} -c ")
    assert title not in shown["args"]


def test_comm_is_cut_at_a_character_boundary() -> None:
    """15 bytes can end inside a UTF-8 sequence: the half character is dropped."""
    shown = run_child(("\u00e9", "x" * 12), block=True)
    assert shown["comm"] == "x" * 12 + ": "  # 14 bytes: the 2-byte \u00e9 would end at 16
    shown = run_child(("w", "\u00e9" * 10), block=True)
    assert shown["comm"] == "\u00e9" * 7  # 14 bytes: the 8th would need 16


def test_false_when_nothing_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setproctitle and no libc prctl: False, never an exception."""
    monkeypatch.setitem(sys.modules, "setproctitle", None)

    def no_libc(*args: object, **kwargs: object) -> None:
        raise OSError("no libc here")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert proctitle.set_title("worker slot=1") is False
    monkeypatch.setattr(sys, "platform", "darwin")
    assert proctitle.set_title("worker slot=1") is False
