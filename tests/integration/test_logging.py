"""The error log as JSON, a user's dictConfig (log_config file or [logging] table), and
chosen header fields in JSON access-log lines (#11), on the real command."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import http_get, running, wait_until
from tests.integration.test_cli import run_cli

WSGI = "tests.apps.http_apps:wsgi_app"


def records(text: str) -> list[dict[str, Any]]:
    """Every line of an error log, parsed: each one must be a JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_json_error_log(tmp_path: Path) -> None:
    """--log-format json: every line is an object with the keys; a worker's says role
    "worker" and an integer slot; an app's exception carries its traceback."""
    with running(WSGI, "--log-format", "json", "--workers", "2", ready=2) as server:
        assert http_get(server.url, "/error").status_code == 500
        server.wait_for(r'"exception":"Traceback')
        found = records(server.log())
    keys = {"time", "level", "logger", "role", "slot", "pid", "message"}
    assert all(keys <= set(r) for r in found), found
    arbiter = next(r for r in found if "all 2 workers ready" in r["message"])
    assert arbiter["role"] == "arbiter" and arbiter["slot"] is None
    assert arbiter["time"].endswith("Z") and len(arbiter["time"]) == len("2025-01-01T00:00:00.000Z")
    serving = [r for r in found if r["message"].startswith("serving WSGI app")]
    assert {r["role"] for r in serving} == {"worker"}
    assert sorted(r["slot"] for r in serving) == [0, 1]
    error = next(r for r in found if "exception" in r)
    assert (
        error["level"] == "ERROR" and error["role"] == "worker" and isinstance(error["slot"], int)
    )
    assert "RuntimeError: boom before the response" in error["exception"]
    assert "Traceback" not in error["message"]
    assert not [r for r in found if "exception" in r and r is not error]


def _file_config(out: Path) -> dict[str, Any]:
    """A dictConfig that sends gunrunner's lines to `out` in its own format, and keeps
    them in the error log too (gunrunner.logs.ErrorLogHandler)."""
    return {
        "version": 1,
        "formatters": {"mine": {"format": "MINE|%(levelname)s|%(name)s|%(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(out), "formatter": "mine"},
            "errorlog": {"class": "gunrunner.logs.ErrorLogHandler"},
        },
        "loggers": {"gunrunner": {"handlers": ["file", "errorlog"], "level": "INFO"}},
    }


def _toml(config: dict[str, Any], table: str = "") -> str:
    """`config` (the shape of _file_config) as TOML, under `table` ("" for the top)."""
    prefix = f"{table}." if table else ""
    out = [f"[{table}]"] if table else []
    out.append("version = 1")
    for section, entries in config.items():
        if section == "version":
            continue
        for name, entry in entries.items():
            out.append(f'[{prefix}{section}."{name}"]')
            out += [f"{key} = {json.dumps(value)}" for key, value in entry.items()]
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("kind", ["toml", "json"])
def test_log_config_file_adds_a_handler(tmp_path: Path, kind: str) -> None:
    """--log-config FILE.toml / FILE.json: its handler gets gunrunner's lines, arbiter's
    and workers', in its own format; the error log goes on."""
    out = tmp_path / "mine.log"
    path = tmp_path / f"logging.{kind}"
    config = _file_config(out)
    path.write_text(_toml(config) if kind == "toml" else json.dumps(config))
    with running(WSGI, "--log-config", str(path), "--workers", "2", ready=2) as server:
        assert wait_until(lambda: any("all 2 workers ready" in x for x in lines(out)), 5)
        assert wait_until(
            lambda: (
                sum(x.startswith("MINE|INFO|gunrunner.worker|serving") for x in lines(out)) == 2
            ),
            5,
        )
        assert "all 2 workers ready" in server.log()  # still in the error log
        server.assert_no_errors_before("all 2 workers ready")


def test_logging_table_in_the_config_file(tmp_path: Path) -> None:
    """A [logging] table in the config file is a dictConfig, not an unknown option."""
    out = tmp_path / "mine.log"
    conf = tmp_path / "gunrunner.toml"
    conf.write_text(f'app = "{WSGI}"\n' + _toml(_file_config(out), "logging"))
    assert run_cli("--config", str(conf), "--check-config").returncode == 0
    with running("--config", str(conf), ready=1):
        assert wait_until(lambda: any("serving WSGI app" in x for x in lines(out)), 5)
        # Every line in its format (the first may be the WARNING of a run as root).
        assert all(
            x.startswith(("MINE|INFO|gunrunner.", "MINE|WARNING|gunrunner.")) for x in lines(out)
        )
        assert any(x.startswith("MINE|INFO|gunrunner.worker|serving WSGI app") for x in lines(out))


def test_log_config_wins_over_the_table(tmp_path: Path) -> None:
    """Both set: log_config is applied, with a warning naming both."""
    table_out, file_out = tmp_path / "table.log", tmp_path / "file.log"
    conf = tmp_path / "gunrunner.toml"
    conf.write_text(_toml(_file_config(table_out), "logging"))
    path = tmp_path / "logging.json"
    path.write_text(json.dumps(_file_config(file_out)))
    with running(WSGI, "--config", str(conf), "--log-config", str(path), ready=1) as server:
        server.wait_for(r"WARNING .*log_config .*logging\.json is applied; the \[logging\] table")
        assert wait_until(lambda: any("serving WSGI app" in x for x in lines(file_out)), 5)
        assert not table_out.exists()


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("missing.toml", None, "cannot read it"),
        ("bad.json", "{not json", "not valid JSON"),
        ("bad.toml", "version = ", "not valid TOML"),
        ("schema.json", json.dumps({"version": 2}), "version must be 1"),
        (
            "handler.json",
            json.dumps({"version": 1, "loggers": {"x": {"handlers": ["nope"]}}}),
            'handler "nope" is not defined',
        ),
        (
            "class.toml",
            'version = 1\n[handlers.h]\nclass = "logging.NoSuchHandler"\n',
            'cannot import "logging.NoSuchHandler"',
        ),
    ],
)
def test_bad_log_config_stops_the_start(
    tmp_path: Path, name: str, text: str | None, problem: str
) -> None:
    """A bad dictConfig: exit 2 at once, naming the file and the problem."""
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    for extra in ((), ("--check-config",)):
        result = run_cli(WSGI, "--bind", "127.0.0.1:0", "--log-config", str(path), *extra)
        assert result.returncode == 2, result.stderr
        assert str(path) in result.stderr and problem in result.stderr, result.stderr


def test_bad_log_config_refuses_the_hup(tmp_path: Path) -> None:
    """A HUP whose config file's [logging] table is broken is refused; the workers and
    the running log setup stay."""
    out = tmp_path / "mine.log"
    conf = tmp_path / "gunrunner.toml"
    conf.write_text(_toml(_file_config(out), "logging"))
    with running(WSGI, "--config", str(conf), "--workers", "2", ready=2) as server:
        before = set(server.workers())
        conf.write_text('[logging]\nversion = 1\n[logging.root]\nlevel = "LOUD"\n')
        server.send_signal(signal.SIGHUP)
        line = server.wait_for(r"ERROR .*SIGHUP refused.*").group(0)
        assert str(conf) in line and "unknown level 'LOUD'" in line
        assert set(server.workers()) == before
        assert wait_until(lambda: any("SIGHUP refused" in x for x in lines(out)), 5)


@pytest.mark.usefixtures("http_driver")  # h11, then httptools
def test_access_log_headers_in_json_lines(tmp_path: Path) -> None:
    """access_log_headers: request fields by name, response fields prefixed "response:",
    in request_headers / response_headers objects; absent fields are null."""
    log = tmp_path / "access.jsonl"
    args = (
        "--access-log",
        str(log),
        "--access-log-json",
        *("--access-log-headers", "X-Trace"),
        *("--access-log-headers", "x-absent"),
        *("--access-log-headers", "response:Content-Type"),
        *("--access-log-headers", "response:server"),
        *("--access-log-headers", "response:x-nothing"),
    )
    with running("tests.apps.basic:asgi_pid", *args, ready=1) as server:
        http_get(server.url, "/", headers={"X-Trace": "t-1"})
        assert wait_until(lambda: len(lines(log)) == 1, 5)
        record = json.loads(lines(log)[0])
        server.assert_no_errors_before("serving ASGI app")
    assert record["request_headers"] == {"x-trace": "t-1", "x-absent": None}
    assert record["response_headers"] == {
        "content-type": "text/plain",
        "server": "gunrunner",
        "x-nothing": None,
    }
    assert record["status"] == 200


def test_access_log_headers_with_a_text_log_warns(tmp_path: Path) -> None:
    """The text access log ignores access_log_headers, and says so once."""
    log = tmp_path / "access.log"
    args = ("--access-log", str(log), "--access-log-headers", "x-trace", "--workers", "2")
    with running("tests.apps.basic:wsgi_pid", *args, ready=2) as server:
        http_get(server.url, "/", headers={"X-Trace": "t-1"})
        assert wait_until(lambda: len(lines(log)) == 1, 5)
        assert "t-1" not in lines(log)[0]
        warnings = [x for x in server.log().splitlines() if "access_log_headers applies" in x]
        assert len(warnings) == 1 and " WARNING " in warnings[0]


def test_usr1_reopens_the_files_of_a_log_config(tmp_path: Path) -> None:
    """After logrotate moves a file a log_config handler writes, SIGUSR1 makes the
    arbiter and every worker write a fresh one."""
    out = tmp_path / "mine.log"
    path = tmp_path / "logging.json"
    path.write_text(json.dumps(_file_config(out)))
    with running(WSGI, "--log-config", str(path), "--workers", "2", ready=2) as server:
        assert wait_until(lambda: any("all 2 workers ready" in x for x in lines(out)), 5)
        out.rename(tmp_path / "mine.log.1")
        server.send_signal(signal.SIGUSR1)
        server.wait_for("log files reopened", count=3)  # the arbiter and 2 workers
        assert wait_until(lambda: sum("log files reopened" in x for x in lines(out)) == 3, 5), (
            lines(out)
        )
        assert not any("log files reopened" in x for x in lines(tmp_path / "mine.log.1"))
