"""gunrunner: a pre-fork app server for WSGI and ASGI applications."""

from __future__ import annotations

import sys

__version__ = "0.1.0.dev0"

# Every entry point (the `gunrunner` script, `python -m gunrunner`) imports this package
# before any Unix-only module (resource, fork, Unix signals): refuse Windows here, with one
# line and exit code 1, instead of a traceback at `import resource`.
if sys.platform == "win32":
    sys.exit(
        "gunrunner: Windows is not supported (gunrunner needs fork() and Unix signals); "
        "use WSL or a Linux container"
    )
