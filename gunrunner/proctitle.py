"""Process titles, so `ps` and `top` tell the arbiter from worker slot 2.

Two names can be set, and tools show different ones:
- the command line (/proc/PID/cmdline: `ps -ef`, `ps aux`, `top -c`), which only the
  optional `setproctitle` package can rewrite (it moves environ to make room in argv);
- the kernel's comm name (/proc/PID/comm, at most 15 bytes: `top`, `ps -o comm`,
  `pgrep`, `killall`), set with prctl(PR_SET_NAME). setproctitle sets it too, with the
  same truncation, so both paths give the same comm.
Without setproctitle we set only comm: the command line stays `python -m gunrunner ...`.
A title is cosmetic: set_title never raises, it returns False when nothing was set.
"""

from __future__ import annotations

import ctypes
import importlib
import sys

_PR_SET_NAME = 15  # <linux/prctl.h>
_COMM_BYTES = 15  # TASK_COMM_LEN is 16, including the NUL


def set_title(role: str, proc_name: str = "gunrunner") -> bool:
    """Show `proc_name: role` (e.g. "gunrunner: worker slot=2") as this process's title."""
    title = f"{proc_name}: {role}" if proc_name else role
    try:
        # import_module, not `import`: mypy --strict passes whether the extra is installed.
        module = importlib.import_module("setproctitle")
    except ImportError:
        return _set_comm(title)
    try:
        module.setproctitle(title)
    except Exception:
        return _set_comm(title)
    return True


def _set_comm(title: str) -> bool:
    """prctl(PR_SET_NAME, title) through libc; False off Linux or if it fails."""
    if not sys.platform.startswith("linux"):
        return False
    # Cut at a character boundary: half a UTF-8 sequence would show as garbage.
    name = title.encode()[:_COMM_BYTES].decode(errors="ignore").encode()
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the process's own symbols include libc
        return int(libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False
