"""Unsupported platforms are refused with one line, on every entry point, not a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO

REFUSAL = (
    "gunrunner: Windows is not supported (gunrunner needs fork() and Unix signals); "
    "use WSL or a Linux container\n"
)

# Each entry point, run in a Python that believes it is on Windows (the Unix-only modules
# would still import here, so only the check can stop it).
ENTRY_POINTS = {
    # The `gunrunner` console script: whatever pyproject.toml names, loaded like pip's
    # generated script does.
    "console script": "from importlib.metadata import entry_points\n"
    "(script,) = entry_points(group='console_scripts', name='gunrunner')\n"
    "script.load()()",
    # python -m gunrunner
    "python -m": "import runpy\nrunpy.run_module('gunrunner', run_name='__main__', alter_sys=True)",
    "import gunrunner.cli": "import gunrunner.cli",
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_windows_is_refused_in_one_line(entry: str) -> None:
    """Exit code 1 and the one line on stderr; nothing else, no traceback."""
    code = "import sys\nsys.platform = 'win32'\nsys.argv = ['gunrunner', '--version']\n"
    result = subprocess.run(
        [sys.executable, "-c", code + ENTRY_POINTS[entry]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stderr, result.stdout) == (1, REFUSAL, "")


def test_linux_runs_the_same_entry_point() -> None:
    """The same script on the real platform gets as far as --version."""
    code = "import sys\nsys.argv = ['gunrunner', '--version']\n" + ENTRY_POINTS["console script"]
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stdout.split()[0]) == (0, "gunrunner"), result.stderr
