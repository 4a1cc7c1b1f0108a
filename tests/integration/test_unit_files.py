"""conf/gunrunner.service and conf/gunrunner.socket: systemd accepts them, and they agree.

`systemd-analyze verify` needs no running systemd. It exits 0 even for an unknown key or a
value it cannot parse (it only prints "Unknown key ..., ignoring"), so the tests also read
stderr; test_verify_reports_bad_keys shows that it does print them on this machine.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gunrunner.options import Options
from gunrunner.systemd import ActivatedSocket, parse_listen_environ

CONF = Path(__file__).resolve().parents[2] / "conf"
SERVICE = "gunrunner.service"
SOCKET = "gunrunner.socket"
INSTALLED_BINARY = "/usr/local/bin/gunrunner"


def _read(path: Path) -> configparser.ConfigParser:
    # strict=False: units repeat keys (After=); the last one wins here, which the checks
    # below allow for. No interpolation: "$MAINPID" is systemd's, not ours.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string(path.read_text(), source=str(path))
    return parser


def _seconds(value: str) -> float:
    """A systemd time span such as "45", "45s", "1min 30s" or "2m", in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.fullmatch(r"(\s*\d+\s*(?:s|sec|min|m|h)?)+\s*", value)
    assert parts, f"not a time span: {value!r}"
    return sum(
        int(number) * units[unit] for number, unit in re.findall(r"(\d+)\s*(sec|min|s|m|h)?", value)
    )


def _executable() -> str:
    """An existing absolute program for ExecStart=, so that verify checks the rest."""
    script = Path(sys.executable).parent / "gunrunner"
    return str(script if script.exists() else Path(sys.executable).resolve())


def _copy_units(directory: Path, extra_service_line: str = "") -> tuple[Path, Path]:
    service = directory / SERVICE
    socket_unit = directory / SOCKET
    text = (CONF / SERVICE).read_text()
    assert f"ExecStart={INSTALLED_BINARY} " in text
    text = text.replace(f"ExecStart={INSTALLED_BINARY} ", f"ExecStart={_executable()} ")
    if extra_service_line:
        text = text.replace("[Service]\n", f"[Service]\n{extra_service_line}\n")
    service.write_text(text)
    shutil.copy(CONF / SOCKET, socket_unit)
    return service, socket_unit


def _verify(*units: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    # --recursive-errors=no: judge our two units, not the targets they name (a container
    # may lack network-online.target).
    return subprocess.run(
        [analyze, "verify", "--man=no", "--recursive-errors=no", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(90)
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    service, socket_unit = _copy_units(tmp_path)
    result = _verify(service, socket_unit)
    about_ours = [
        line
        for line in result.stderr.splitlines()
        if str(tmp_path) in line or SERVICE in line or SOCKET in line
    ]
    assert about_ours == [], result.stderr
    assert result.returncode == 0, result.stderr


@pytest.mark.timeout(90)
def test_verify_reports_bad_keys(tmp_path: Path) -> None:
    service, socket_unit = _copy_units(tmp_path, "BogusKey=1\nTimeoutStopSec=banana")
    result = _verify(service, socket_unit)
    assert "Unknown key 'BogusKey' in section [Service]" in result.stderr
    assert "Failed to parse time value" in result.stderr
    assert str(service) in result.stderr


def test_service_settings() -> None:
    service = _read(CONF / SERVICE)["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["ExecStart"].split() == [
        INSTALLED_BINARY,
        "--config",
        "/etc/gunrunner/gunrunner.toml",
    ]  # no --bind: the socket unit provides the listener
    assert service["ExecReload"].split() == ["/bin/kill", "-HUP", "$MAINPID"]
    assert service["KillMode"] == "mixed"
    assert service["KillSignal"] == "SIGTERM"
    # Above the default graceful_timeout, or systemd SIGKILLs workers still draining.
    assert _seconds(service["TimeoutStopSec"]) > max(30.0, Options().graceful_timeout)
    assert _seconds(service["WatchdogSec"]) == 30
    assert service["Restart"] == "on-failure"
    assert service["User"] and service["User"] != "root"
    assert service["Group"] and service["Group"] != "root"
    assert service["ProtectSystem"] == "strict"
    assert service["RestrictAddressFamilies"].split() == ["AF_UNIX", "AF_INET", "AF_INET6"]
    for key in (
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectControlGroups",
    ):
        assert service[key] == "true", key


def test_socket_is_what_the_service_expects() -> None:
    service_unit = _read(CONF / SERVICE)
    socket_section = _read(CONF / SOCKET)["Socket"]
    assert socket_section["Service"] == SERVICE
    assert SOCKET in service_unit["Unit"]["Requires"].split()
    assert socket_section["ListenStream"] == "8000"
    assert socket_section["NoDelay"] == "true"
    assert socket_section["ReusePort"] == "false"
    assert socket_section.get("Accept", "no") == "no"  # a listener, not one connection

    # What gunrunner makes of the environment systemd builds from this socket unit.
    name = socket_section["FileDescriptorName"]
    assert name == "http"
    environ = {"LISTEN_PID": "100", "LISTEN_FDS": "1", "LISTEN_FDNAMES": name}
    activated = parse_listen_environ(environ, pid=100)
    assert activated == [ActivatedSocket(3, "http")]
    assert activated[0].bind == "fd://3"
