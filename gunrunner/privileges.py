"""Run as an unprivileged user: resolve `user` / `group`, and drop root once bound.

Knows uids, gids and file ownership; nothing of HTTP or of processes beyond its own.

Rules:
1. Names and ids are resolved in preflight (`resolve`), so a user that does not exist
   is a config error naming the key before anything is bound.
2. Everything that needs root is done first, as root: binding (ports below 1024),
   opening the error log, writing the pidfile, creating unix sockets. Then `drop()`
   changes the groups, the gid and last the uid of the main process (the arbiter, or the
   single process), before any worker, watcher or admin process is forked, so no child
   ever runs as root.
3. Files created as root that the server must still touch as the user (the unix socket
   files, removed at exit; the error and access logs and a log_config's files, reopened
   on SIGUSR1) are handed to the user first. The pidfile stays root's: an app that
   could rewrite it could make root's scripts signal another process.
4. Without `user`, a server started as root says so once (WARNING): an app running as
   root turns any bug in it into a root compromise.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
from dataclasses import dataclass

from gunrunner.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the server runs as after the drop."""

    uid: int
    gid: int
    name: str  # the user's name, for initgroups() and log lines
    group_name: str


def resolve(user: str | None, group: str | None) -> Identity | None:
    """The identity `user` / `group` name (or number); None when neither is set.

    A group alone keeps the current user; a user alone takes the user's primary group.
    """
    if not user and not group:
        return None
    if user:
        try:
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        except KeyError:
            raise ConfigError(f"user: no such user: {user!r}", key="user") from None
    else:
        entry = pwd.getpwuid(os.geteuid())
    gid = entry.pw_gid
    if group:
        try:
            gid = grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError(f"group: no such group: {group!r}", key="group") from None
    try:
        group_name = grp.getgrgid(gid).gr_name
    except KeyError:
        group_name = str(gid)
    identity = Identity(entry.pw_uid, gid, entry.pw_name, group_name)
    if os.geteuid() != 0 and (identity.uid != os.geteuid() or identity.gid != os.getegid()):
        key = "user" if identity.uid != os.geteuid() else "group"
        raise ConfigError(
            f"{key}: running as {identity.name}:{group_name} needs root to start "
            f"(gunrunner runs as uid {os.geteuid()}); start it as root, or drop the option",
            key=key,
        )
    return identity


def hand_over(identity: Identity, paths: list[str]) -> None:
    """Rule 3: give files created as root to the user the server will run as. A symlink
    is not followed: one planted by the app in a directory the user may write must not
    make root hand over the file it points to."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.chown(path, identity.uid, identity.gid, follow_symlinks=False)


def drop(identity: Identity) -> None:
    """Rule 2: become `identity` for good (groups, gid, then uid: after setuid() there
    would be no right left to change the others)."""
    if os.geteuid() == identity.uid and os.getegid() == identity.gid:
        return
    os.initgroups(identity.name, identity.gid)
    os.setgid(identity.gid)
    os.setuid(identity.uid)
    log.info("running as user %s, group %s", identity.name, identity.group_name)


def warn_if_root() -> None:
    """Rule 4."""
    if os.geteuid() == 0:
        log.warning(
            "running as root: the app can do anything on this machine if it is broken "
            "into; set user and group (bound as root, then dropped before the workers start)"
        )
