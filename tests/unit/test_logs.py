"""The error log's JSON formatter, the user's dictConfig checks, and access_log_headers
in JSON access-log lines (gunrunner/logs.py, gunrunner/access.py)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from gunrunner import access, config, logs
from gunrunner.errors import ConfigError
from gunrunner.protocols.observers import ResponseRecord, refused_head_record


def make_record(
    msg: str = "hello %s", args: tuple[Any, ...] = ("world",), role: str | None = None, **kw: Any
) -> logging.LogRecord:
    record = logging.LogRecord("gunrunner.test", logging.INFO, __file__, 1, msg, args, None)
    for key, value in kw.items():
        setattr(record, key, value)
    if role is not None:
        record.role = role
    return record


def formatted(record: logging.LogRecord) -> dict[str, Any]:
    line = logs.JSONFormatter().format(record)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_json_line_keys_and_values() -> None:
    record = make_record(role="worker slot=2")
    record.created = 1700000000.5
    record.msecs = 500.0
    data = formatted(record)
    assert data == {
        "time": "2023-11-14T22:13:20.500Z",
        "level": "INFO",
        "logger": "gunrunner.test",
        "role": "worker",
        "slot": 2,
        "pid": record.process,
        "message": "hello world",
    }
    assert list(data)[:4] == ["time", "level", "logger", "role"]


@pytest.mark.parametrize(
    ("role", "name", "slot"),
    [
        ("arbiter", "arbiter", None),
        ("main", "main", None),
        ("worker slot=0", "worker", 0),
        ("reloader", "reloader", None),
        ("odd slot=x", "odd slot=x", None),
    ],
)
def test_role_is_split_into_role_and_slot(role: str, name: str, slot: int | None) -> None:
    data = formatted(make_record(role=role))
    assert (data["role"], data["slot"]) == (name, slot)


def test_role_defaults_to_the_process_role(monkeypatch: pytest.MonkeyPatch) -> None:
    """A record that did not pass gunrunner's handler (a user's handler) still has one."""
    monkeypatch.setattr(logs, "_role", "worker slot=3")
    assert formatted(make_record())["slot"] == 3


def test_exception_and_stack_only_when_present() -> None:
    assert "exception" not in formatted(make_record())
    try:
        raise ValueError('bad "thing"\nsecond line')
    except ValueError:
        exc_record = make_record(exc_info=sys.exc_info())
    data = formatted(exc_record)
    assert data["exception"].startswith("Traceback (most recent call last):")
    assert 'ValueError: bad "thing"\nsecond line' in data["exception"]
    assert data["message"] == "hello world"
    stack = formatted(make_record(stack_info="Stack (most recent call last):\n  here"))
    assert stack["exception"] == "Stack (most recent call last):\n  here"


def test_message_with_control_characters_stays_one_line() -> None:
    data = formatted(make_record("a\nb\x00\u00e9", ()))
    assert data["message"] == "a\nb\x00\u00e9"


def test_setup_json_writes_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "error.log"
    logs.set_role("worker slot=1")
    try:
        logs.setup("info", str(path), "json")
        logging.getLogger("gunrunner.unit").info("n=%d", 5)
    finally:
        logs.setup("info", "-")
        logs.set_role("main")
    data = json.loads(path.read_text().splitlines()[0])
    assert data["message"] == "n=5" and data["role"] == "worker" and data["slot"] == 1


# -- the user's dictConfig -----------------------------------------------------------------


def user(cfg: dict[str, Any]) -> logs.UserConfig:
    return logs.UserConfig("log_config x.json", cfg)


@pytest.mark.parametrize(
    ("cfg", "problem"),
    [
        ({}, "version must be 1"),
        ({"version": 1, "handlers": []}, "handlers must be a table"),
        ({"version": 1, "handlers": {"h": {}}}, 'handlers.h: no "class" given'),
        ({"version": 1, "handlers": {"h": {"class": "nope.Nope"}}}, 'cannot import "nope.Nope"'),
        (
            {"version": 1, "handlers": {"h": {"class": "logging.StreamHandler", "strm": 1}}},
            "unexpected keyword argument 'strm'",
        ),
        (
            {"version": 1, "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "f"}}},
            'formatter "f" is not defined',
        ),
        ({"version": 1, "formatters": {"f": {"format": "%(x"}}}, "formatters.f: bad format"),
        ({"version": 1, "root": {"level": "LOUD"}}, "root: unknown level 'LOUD'"),
        ({"version": 1, "loggers": {"a": {"handlers": ["h"]}}}, 'handler "h" is not defined'),
        ({"version": 1, "loggers": {"a": {"filters": ["f"]}}}, 'filter "f" is not defined'),
    ],
)
def test_check_user_config_names_the_file_and_problem(cfg: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        logs.check_user_config(user(cfg))
    assert "log_config x.json: " in str(caught.value) and problem in str(caught.value)


def test_check_user_config_accepts_a_full_config(tmp_path: Path) -> None:
    cfg = {
        "version": 1,
        "formatters": {"f": {"format": "{message}", "style": "{"}},
        "filters": {"only": {"name": "gunrunner"}},
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "filename": str(tmp_path / "x.log"),
                "formatter": "f",
                "level": "DEBUG",
                "filters": ["only"],
            },
            "mine": {"class": "gunrunner.logs.ErrorLogHandler"},
        },
        "loggers": {"app": {"handlers": ["file", "mine"], "level": 10}},
        "root": {"level": "WARNING"},
    }
    logs.check_user_config(user(cfg))
    assert not (tmp_path / "x.log").exists()  # checked, nothing opened


def test_read_user_config(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('version = 1\n[root]\nlevel = "INFO"\n')
    (tmp_path / "a.json").write_text('{"version": 1}')
    assert logs.read_user_config(str(tmp_path / "a.toml")).config["root"] == {"level": "INFO"}
    assert logs.read_user_config(str(tmp_path / "a.json")).source.endswith("a.json")
    (tmp_path / "list.json").write_text("[1]")
    (tmp_path / "a.yaml").write_text("")
    for name, problem in [
        ("list.json", "expected an object"),
        ("a.yaml", "name a .json or a .toml file"),
        ("none.json", "cannot read it"),
    ]:
        with pytest.raises(ConfigError, match=problem):
            logs.read_user_config(str(tmp_path / name))


def test_log_config_wins_over_the_table(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"version": 1}')
    table = {"version": 1, "root": {"level": "INFO"}}
    chosen = logs.user_config(str(tmp_path / "a.json"), table, "g.toml")
    assert chosen is not None and chosen.config == {"version": 1}
    assert chosen.shadows == "[logging] table of g.toml"
    only_table = logs.user_config(None, table, "g.toml")
    assert only_table == logs.UserConfig("[logging] table of g.toml", table)
    assert logs.user_config(None, None, None) is None


def test_apply_keeps_existing_loggers_unless_told(tmp_path: Path) -> None:
    existing = logging.getLogger("gunrunner.unit.existing")
    existing.disabled = False
    out = tmp_path / "x.log"
    cfg = {
        "version": 1,
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(out)}},
        "loggers": {"gunrunner.unit.mine": {"handlers": ["file"], "level": "INFO"}},
    }
    try:
        logs.apply_user_config(user(cfg))
        assert not existing.disabled
        logging.getLogger("gunrunner.unit.mine").info("to the file")
        assert "to the file" in out.read_text()
    finally:
        mine = logging.getLogger("gunrunner.unit.mine")
        for handler in list(mine.handlers):
            mine.removeHandler(handler)
            handler.close()
        logs.setup("info", "-")


def test_logging_table_is_not_an_unknown_option(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text('workers = 2\n[logging]\nversion = 1\n[logging.root]\nlevel = "INFO"\n')
    loaded = config.load({}, str(path), environ={})
    assert loaded.options.workers == 2
    assert loaded.logging == {"version": 1, "root": {"level": "INFO"}}
    assert config.read_file(str(path)) == {"workers": 2}
    assert "# [logging] table" in config.render_toml(loaded)
    path.write_text('logging = "x"\n')
    with pytest.raises(ConfigError, match='"logging" must be a table'):
        config.load({}, str(path), environ={})


# -- access_log_headers -------------------------------------------------------------------


def access_record(response_headers: Any = None) -> ResponseRecord:
    return ResponseRecord(
        ("127.0.0.1", 5000),
        "GET",
        b"/p",
        b"",
        "1.1",
        [(b"x-trace", b"a"), (b"x-trace", b"b"), (b"user-agent", b"ua")],
        200,
        2,
        0.001,
        "rid",
        False,
        response_headers,
    )


def test_split_header_names() -> None:
    request, response = access.split_header_names(
        ["X-Trace", "x-trace", "response:Content-Type", " RESPONSE: Server ", "response:"]
    )
    assert request == (b"x-trace",)
    assert response == (b"content-type", b"server")


def test_json_access_line_with_headers(tmp_path: Path) -> None:
    path = tmp_path / "access.jsonl"
    names = ("x-trace", "x-absent", "response:content-type", "response:x-none")
    log = access.AccessLog(str(path), as_json=True, headers=names)
    assert log.wants_response_headers  # the worker's exchanges keep their headers
    log.response(access_record([(b"Content-Type", b"text/plain"), (b"server", b"g")]))
    log.response(refused_head_record(None, None, status=400, sent=0))
    log.close()
    first, refused = (json.loads(line) for line in path.read_text().splitlines())
    assert first["request_headers"] == {"x-trace": "a, b", "x-absent": None}
    assert first["response_headers"] == {"content-type": "text/plain", "x-none": None}
    assert refused["request_headers"] == {"x-trace": None, "x-absent": None}
    assert refused["response_headers"] == {"content-type": None, "x-none": None}


def test_headers_off_or_text_add_nothing(tmp_path: Path) -> None:
    plain, text = tmp_path / "plain.jsonl", tmp_path / "text.log"
    request_only = access.AccessLog(str(plain), as_json=True, headers=("x-trace",))
    request_only.response(access_record())
    request_only.close()
    assert not request_only.wants_response_headers  # no response field: nothing kept
    assert "response_headers" not in json.loads(plain.read_text())
    text_log = access.AccessLog(str(text), headers=("x-trace", "response:server"))
    text_log.response(access_record())
    text_log.close()
    assert not text_log.wants_response_headers
    assert '"GET /p HTTP/1.1" 200 2' in text.read_text()


def test_example_log_config_checks() -> None:
    """conf/logging.toml: a log_config file, and a config file with a [logging] table."""
    example = str(Path(__file__).resolve().parents[2] / "conf" / "logging.toml")
    user = logs.read_user_config(example)
    assert user.config["version"] == 1
    logs.check_user_config(user)
    loaded = config.load({}, example, environ={})
    assert loaded.logging == user.config
