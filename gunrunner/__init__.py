"""gunrunner: a pre-fork app server for WSGI and ASGI applications."""

from __future__ import annotations

__version__ = "0.1.0.dev0"
