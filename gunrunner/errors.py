"""Errors gunrunner raises, each worded for the operator who has to act on it.

GunrunnerError                 base; cli.py turns it into one line and an exit code
  ConfigError                  a bad option value, key or file (exit 2)
  BindError                    an address that cannot be parsed, resolved or bound (exit 1)
  AppLoadError                 the app cannot be imported or is not callable (exit 4)
  BootError                    the app loaded but failed to start, e.g. lifespan (exit 3)
  NoWorkersError               no worker process could be started (exit 1)

Library code raises these; only cli.py exits.
"""

from __future__ import annotations

# Exit codes. A worker uses the boot codes to tell the arbiter "do not respawn me".
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_BOOT_ERROR = 3
EXIT_APP_LOAD_ERROR = 4
# A worker that exits with one of these while booting could not start: respawning it
# would fail the same way.
BOOT_FAILURE_CODES = frozenset({EXIT_CONFIG, EXIT_BOOT_ERROR, EXIT_APP_LOAD_ERROR})


class GunrunnerError(Exception):
    """Base class: str(error) is a complete line for the log."""

    exit_code = EXIT_ERROR


class ConfigError(GunrunnerError):
    """An option has a bad value, or a config file cannot be used."""

    exit_code = EXIT_CONFIG

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None):
        self.key = key
        self.source = source
        self.detail = message
        where = f"{source}: " if source else ""
        super().__init__(f"config error: {where}{message}")

    def located(self, source: str | None) -> ConfigError:
        """The same error, naming where its key came from (a file, "environment", ...)."""
        if self.source is not None or source in (None, "default"):
            return self
        return ConfigError(self.detail, key=self.key, source=source)


class BindError(GunrunnerError):
    """An address cannot be parsed, resolved or listened on."""

    def __init__(self, address: str, reason: str, hint: str = ""):
        self.address = address
        self.reason = reason
        tail = f"; {hint}" if hint else ""
        super().__init__(f"cannot bind {address}: {reason}{tail}")


class AppLoadError(GunrunnerError):
    """The application cannot be imported, found or called."""

    exit_code = EXIT_APP_LOAD_ERROR


class BootError(GunrunnerError):
    """The application was imported but did not start (e.g. lifespan startup failed)."""

    exit_code = EXIT_BOOT_ERROR


class NoWorkersError(GunrunnerError):
    """Every attempt to start a worker process failed."""
