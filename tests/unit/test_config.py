"""The option table: TOML, environment and CLI loading, precedence, and error messages."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from gunrunner import config
from gunrunner._kinds import OptionSpec
from gunrunner.cli import build_parser, cli_values
from gunrunner.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gunrunner.toml"
    path.write_text(text)
    return str(path)


def parse_cli(*argv: str) -> dict[str, object]:
    return cli_values(build_parser().parse_args(list(argv)))


def test_defaults_without_any_source() -> None:
    """With no file, env or flag every option has its declared default."""
    loaded = config.load({}, None, environ={})
    assert loaded.options.workers == 1
    assert loaded.options.bind == ("127.0.0.1:8000",)
    assert set(loaded.sources.values()) == {"default"}


def test_file_then_env_then_cli(tmp_path: Path) -> None:
    """defaults < file < GUNRUNNER_* < command line, and sources say which won."""
    path = write(
        tmp_path, 'workers = 2\nthreads = 3\nbind = "127.0.0.1:9000"\nlog_level = "debug"\n'
    )
    env = {"GUNRUNNER_WORKERS": "5", "GUNRUNNER_THREADS": "7"}
    loaded = config.load(parse_cli("--threads", "9"), path, environ=env)
    options = loaded.options
    assert (options.workers, options.threads, options.log_level) == (5, 9, "debug")
    assert options.bind == ("127.0.0.1:9000",)
    assert loaded.sources["workers"] == "environment"
    assert loaded.sources["threads"] == "command line"
    assert loaded.sources["log_level"] == path
    assert loaded.sources["backlog"] == "default"


def test_config_file_from_environment(tmp_path: Path) -> None:
    """GUNRUNNER_CONFIG names the file when --config is not given."""
    path = write(tmp_path, "workers = 3\n")
    loaded = config.load({}, None, environ={"GUNRUNNER_CONFIG": path})
    assert loaded.options.workers == 3
    assert loaded.config_file == path


def test_unknown_key_names_file_and_closest_option(tmp_path: Path) -> None:
    """A typo in the file is an error that names the key, the file and the fix."""
    path = write(tmp_path, "worker = 4\n")
    with pytest.raises(ConfigError) as info:
        config.load({}, path, environ={})
    assert str(info.value) == f'config error: {path}: unknown key "worker"; did you mean "workers"?'


def test_wrong_type_names_key_and_expected(tmp_path: Path) -> None:
    """A value of the wrong type says what was expected and what was found."""
    path = write(tmp_path, 'workers = "four"\n')
    with pytest.raises(ConfigError) as info:
        config.load({}, path, environ={})
    message = str(info.value)
    assert path in message
    assert 'key "workers"' in message
    assert 'expected an integer or "auto" >= 0' in message
    assert "'four' (string)" in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("workers = -1\n", 'expected an integer or "auto" >= 0, got -1'),
        ("threads = 0\n", "expected an integer >= 1, got 0"),
        ('interface = "cgi"\n', 'expected one of "auto", "wsgi", "asgi", "asgi2"'),
        ("timeout = true\n", "expected a number >= 0, got True (boolean)"),
        ("bind = []\n", "expected a string or a list of strings"),
        ("factory = 1\n", "expected true or false"),
        ("keepalive_timeout = nan\n", "expected a number >= 0"),
    ],
)
def test_bad_values_in_file(tmp_path: Path, text: str, fragment: str) -> None:
    """Every kind of option rejects a bad value with a clear expectation."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load({}, path, environ={})
    assert fragment in str(info.value)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    """Unparseable and missing files are config errors naming the file."""
    path = write(tmp_path, "workers = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load({}, path, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        config.load({}, str(tmp_path / "nope.toml"), environ={})


def test_workers_auto_and_bind_list(tmp_path: Path) -> None:
    """workers takes "auto"; bind takes a string or a list."""
    path = write(tmp_path, 'workers = "auto"\nbind = ["127.0.0.1:1", "unix:/tmp/x.sock"]\n')
    options = config.load({}, path, environ={}).options
    assert options.workers == "auto"
    assert options.bind == ("127.0.0.1:1", "unix:/tmp/x.sock")


def test_env_values_and_errors() -> None:
    """Env vars are parsed like the CLI; an unknown GUNRUNNER_ variable is an error."""
    env = {"GUNRUNNER_BIND": "127.0.0.1:1, 127.0.0.1:2", "GUNRUNNER_FACTORY": "yes"}
    options = config.load({}, None, environ=env).options
    assert options.bind == ("127.0.0.1:1", "127.0.0.1:2")
    assert options.factory is True
    with pytest.raises(ConfigError, match='GUNRUNNER_WORKERS: expected an integer or "auto"'):
        config.load({}, None, environ={"GUNRUNNER_WORKERS": "many"})
    with pytest.raises(ConfigError, match='did you mean "GUNRUNNER_WORKERS"'):
        config.load({}, None, environ={"GUNRUNNER_WORKER": "2"})


def test_cli_flags_from_table() -> None:
    """Every option has its flag; short flags, repeated binds and --no- booleans work."""
    values = parse_cli(
        "app:x", "-w", "3", "-b", "127.0.0.1:1", "--bind", "[::1]:2", "--no-server-header"
    )
    assert values == {
        "app": "app:x",
        "workers": 3,
        "bind": ("127.0.0.1:1", "[::1]:2"),
        "server_header": False,
    }
    with pytest.raises(ConfigError, match="--workers: expected"):
        parse_cli("--workers", "-2")


def test_print_config_round_trips(tmp_path: Path) -> None:
    """--print-config output is valid TOML that loads back to the same options."""
    loaded = config.load(parse_cli("-w", "3", "--pidfile", "/tmp/p"), None, environ={})
    text = config.render_toml(loaded)
    assert "workers = 3  # command line" in text
    path = write(tmp_path, text)
    assert config.load({}, path, environ={}).options == loaded.options


def test_secret_option_never_shown_in_errors_or_repr(tmp_path: Path) -> None:
    """keyfile_password stays out of error messages (logged on HUP) and repr()."""
    path = tmp_path / "secret.toml"
    path.write_text("keyfile_password = 31415926\n")
    with pytest.raises(ConfigError) as caught:
        config.read_file(str(path))
    assert "31415926" not in str(caught.value)
    assert "keyfile_password" in str(caught.value)
    assert "hunter2" not in repr(config.Options(keyfile_password="hunter2"))


@pytest.mark.parametrize(
    ("toml", "mode"),
    [
        ('unix_socket_mode = "660"\n', 0o660),
        ('unix_socket_mode = "0600"\n', 0o600),
        ('unix_socket_mode = "0o666"\n', 0o666),
        ('umask = "027"\n', 0o027),
        ('umask = "0"\n', 0),
        ('umask = ""\n', None),
    ],
)
def test_modes_are_octal(tmp_path: Path, toml: str, mode: int | None) -> None:
    """unix_socket_mode and umask read octal strings."""
    options = config.load({}, write(tmp_path, toml), environ={}).options
    key = toml.partition(" = ")[0]
    assert getattr(options, key) == mode


def test_mode_defaults_and_sources() -> None:
    """0660 and no umask by default; env and CLI read octal like the file."""
    defaults = config.Options()
    assert (defaults.unix_socket_mode, defaults.umask) == (0o660, None)
    env = {"GUNRUNNER_UNIX_SOCKET_MODE": "0666", "GUNRUNNER_UMASK": "077"}
    options = config.load({}, None, environ=env).options
    assert (options.unix_socket_mode, options.umask) == (0o666, 0o077)
    values = parse_cli("--unix-socket-mode", "600", "--umask", "0o002")
    assert values == {"unix_socket_mode": 0o600, "umask": 0o002}


@pytest.mark.parametrize(
    ("toml", "shown"),
    [
        ("unix_socket_mode = 660\n", "660 (integer)"),  # decimal 660 is 0o1224: no mode
        ("unix_socket_mode = 0o640\n", "416 (integer)"),  # TOML cannot say it was octal
        ("umask = 77\n", "77 (integer)"),  # would be 0o115 taken as decimal
        ('unix_socket_mode = "0999"\n', "'0999' (string)"),
        ('unix_socket_mode = "rw-rw----"\n', "'rw-rw----' (string)"),
        ('unix_socket_mode = "1777"\n', "'1777' (string)"),
        ("unix_socket_mode = true\n", "True (boolean)"),
        ('umask = "-22"\n', "'-22' (string)"),
    ],
)
def test_bad_modes_name_key_and_expected(tmp_path: Path, toml: str, shown: str) -> None:
    """A mode that is not octal 000-777 is an error naming the key and the form wanted."""
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as info:
        config.load({}, path, environ={})
    key = toml.partition(" = ")[0]
    assert str(info.value) == (
        f'config error: {path}: key "{key}": expected an octal mode from "000" to "777" '
        f'as a string, like "660", got {shown}'
    )
    with pytest.raises(ConfigError, match='--umask: expected an octal mode from "000"'):
        parse_cli("--umask", "8")


def test_modes_print_as_octal_and_round_trip(tmp_path: Path) -> None:
    """--print-config shows modes as octal strings, and its output loads back."""
    loaded = config.load(parse_cli("--umask", "27"), None, environ={})
    text = config.render_toml(loaded)
    assert 'unix_socket_mode = "0660"  # default' in text
    assert 'umask = "0027"  # command line' in text
    assert config.load({}, write(tmp_path, text), environ={}).options == loaded.options
    unset = config.render_toml(config.load({}, None, environ={}))
    assert 'umask = ""  # default' in unset


def test_apply_umask_sets_the_process_umask_only_when_set() -> None:
    """apply_umask changes nothing when umask is not set, else sets it and returns the old."""
    before = os.umask(0o022)
    try:
        assert config.apply_umask(config.Options()) is None
        assert os.umask(0o022) == 0o022
        assert config.apply_umask(config.Options(umask=0o077)) == 0o022
        assert os.umask(0o022) == 0o077
    finally:
        os.umask(before)


def test_every_option_has_a_typed_spec() -> None:
    """spec_of() gives each option's OptionSpec; the old metadata keys still mirror it."""
    for name, field in config.FIELDS.items():
        spec = config.spec_of(name)
        assert isinstance(spec, OptionSpec)
        assert spec.kind is config.kind_of(name)
        for key in ("help", "kind", "short", "choices", "minimum", "metavar", "const", "secret"):
            assert field.metadata[key] == getattr(spec, key), (name, key)
    assert config.spec_of("workers").short == "-w"
    assert config.spec_of("keyfile_password").secret
    with pytest.raises(KeyError):
        config.spec_of("worker")


def test_unset_options_have_an_example_that_loads() -> None:
    """conf/gunrunner.toml shows an example for every option without a default; it is valid."""
    for name, field in config.FIELDS.items():
        if field.default is not None:
            continue
        spec = config.spec_of(name)
        assert spec.example is not None, name
        value = spec.kind.from_toml(tomllib.loads(f"x = {spec.kind.to_toml(spec.example)}")["x"])
        assert value == spec.example and spec.problem(value) is None, name


# -- renamed options: the old name is a deprecated alias ------------------------------------

OLD, NEW = "h11_max_incomplete_event_size", "limit_request_head_size"


def test_alias_table_names_real_options() -> None:
    """Every alias maps an unused old name to a declared option."""
    for old, new in config.ALIASES.items():
        assert old not in config.FIELDS and new in config.FIELDS, (old, new)
    assert config.ALIASES[OLD] == NEW


def test_head_size_by_its_new_name_from_each_source(tmp_path: Path) -> None:
    """limit_request_head_size is read from the file, the environment and the CLI, silently."""
    from_file = config.load({}, write(tmp_path, f"{NEW} = 2048\n"), environ={})
    from_env = config.load({}, None, environ={"GUNRUNNER_LIMIT_REQUEST_HEAD_SIZE": "4096"})
    from_cli = config.load(parse_cli("--limit-request-head-size", "8192"), None, environ={})
    assert from_file.options.limit_request_head_size == 2048
    assert from_env.options.limit_request_head_size == 4096
    assert from_cli.options.limit_request_head_size == 8192
    assert from_file.deprecations == from_env.deprecations == from_cli.deprecations == ()
    assert config.Options().limit_request_head_size == 16384


@pytest.mark.parametrize(
    ("source", "warning"),
    [
        ("file", f"{OLD} in {{path}} is deprecated; use {NEW}"),
        (
            "environment",
            "GUNRUNNER_H11_MAX_INCOMPLETE_EVENT_SIZE in the environment is deprecated; "
            "use GUNRUNNER_LIMIT_REQUEST_HEAD_SIZE",
        ),
        (
            "command line",
            "--h11-max-incomplete-event-size on the command line is deprecated; "
            "use --limit-request-head-size",
        ),
    ],
)
def test_head_size_by_its_old_name_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, source: str, warning: str
) -> None:
    """The old name still sets the option, from each source, with one warning naming the
    old name, the new one and the source; the value's source is recorded as usual."""
    path = write(tmp_path, f"{OLD} = 2048\n")
    if source == "file":
        loaded = config.load({}, path, environ={})
    elif source == "environment":
        loaded = config.load({}, None, environ={"GUNRUNNER_H11_MAX_INCOMPLETE_EVENT_SIZE": "2048"})
    else:
        loaded = config.load(parse_cli("--h11-max-incomplete-event-size", "2048"), None, {})
    expected = warning.format(path=path)
    assert loaded.options.limit_request_head_size == 2048
    assert loaded.sources[NEW] == (path if source == "file" else source)
    assert loaded.deprecations == (expected,)
    with caplog.at_level(logging.WARNING, logger="gunrunner.config"):
        config.log_deprecations(loaded)
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("gunrunner.config", "WARNING", expected)
    ]


def test_old_name_values_are_checked_under_the_old_name(tmp_path: Path) -> None:
    """A bad value given by the old name is an error naming the old name, with the new
    option's expectation (its minimum)."""
    path = write(tmp_path, f"{OLD} = 10\n")
    with pytest.raises(ConfigError, match=f'key "{OLD}": expected an integer >= 1024, got 10'):
        config.load({}, path, environ={})
    with pytest.raises(ConfigError, match="--h11-max-incomplete-event-size: expected an integer"):
        parse_cli("--h11-max-incomplete-event-size", "big")
    env = {"GUNRUNNER_H11_MAX_INCOMPLETE_EVENT_SIZE": "512"}
    with pytest.raises(ConfigError, match="GUNRUNNER_H11_MAX_INCOMPLETE_EVENT_SIZE: expected"):
        config.load({}, None, environ=env)


def test_old_and_new_name_in_one_source_is_an_error(tmp_path: Path) -> None:
    """Both names in the same source: an error naming both and the source."""
    path = write(tmp_path, f"{OLD} = 2048\n{NEW} = 4096\n")
    with pytest.raises(ConfigError) as in_file:
        config.load({}, path, environ={})
    env = {
        "GUNRUNNER_H11_MAX_INCOMPLETE_EVENT_SIZE": "2048",
        "GUNRUNNER_LIMIT_REQUEST_HEAD_SIZE": "4096",
    }
    with pytest.raises(ConfigError) as in_env:
        config.load({}, None, environ=env)
    argv = ("--h11-max-incomplete-event-size", "2048", "--limit-request-head-size", "4096")
    with pytest.raises(ConfigError) as on_cli:
        config.load(parse_cli(*argv), None, environ={})
    for info, source, old, new in [
        (in_file, path, f'key "{OLD}"', f'key "{NEW}"'),
        (
            in_env,
            "environment",
            "GUNRUNNER_H11_MAX_INCOMPLETE_EVENT_SIZE",
            "GUNRUNNER_LIMIT_REQUEST_HEAD_SIZE",
        ),
        (on_cli, "command line", "--h11-max-incomplete-event-size", "--limit-request-head-size"),
    ]:
        message = str(info.value)
        assert message.startswith(f"config error: {source}: "), message
        assert old in message and new in message, message
        assert info.value.source == source and info.value.key == NEW


def test_new_name_on_the_cli_beats_old_name_in_the_file(tmp_path: Path) -> None:
    """Different sources may use different names: precedence holds, the warning stays."""
    path = write(tmp_path, f"{OLD} = 2048\n")
    loaded = config.load(parse_cli("--limit-request-head-size", "4096"), path, environ={})
    assert loaded.options.limit_request_head_size == 4096
    assert loaded.sources[NEW] == "command line"
    assert loaded.deprecations == (f"{OLD} in {path} is deprecated; use {NEW}",)
    env = {"GUNRUNNER_H11_MAX_INCOMPLETE_EVENT_SIZE": "8192"}
    loaded = config.load({}, write(tmp_path, f"{NEW} = 2048\n"), environ=env)
    assert loaded.options.limit_request_head_size == 8192


def test_old_flag_is_hidden_from_help_and_hints(capsys: pytest.CaptureFixture[str]) -> None:
    """--help, --print-config and did-you-mean hints show only the new name."""
    text = build_parser().format_help()
    assert "--limit-request-head-size" in text
    assert "h11-max-incomplete" not in text
    assert OLD not in config.render_toml(config.load({}, None, environ={}))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--h11-max-incomplete-event-sise", "2048"])
    assert "did you mean --h11" not in capsys.readouterr().err


def test_platform_port_and_web_concurrency_sit_below_the_config_file(tmp_path: Path) -> None:
    """PORT and WEB_CONCURRENCY (Heroku, Cloud Run, Render) give bind and workers when
    nothing else does; a config file, GUNRUNNER_* and the command line all win."""
    platform = {"PORT": "5123", "WEB_CONCURRENCY": "3"}
    loaded = config.load({}, None, environ=platform)
    assert loaded.options.bind == ("0.0.0.0:5123",)
    assert loaded.options.workers == 3
    assert loaded.sources["bind"] == "PORT"
    assert loaded.sources["workers"] == "WEB_CONCURRENCY"
    path = write(tmp_path, 'bind = "127.0.0.1:9000"\n')
    loaded = config.load({}, path, environ=platform)
    assert loaded.options.bind == ("127.0.0.1:9000",) and loaded.options.workers == 3
    loaded = config.load(parse_cli("-w", "2"), None, environ={**platform, "GUNRUNNER_BIND": ":1"})
    assert loaded.options.bind == (":1",) and loaded.options.workers == 2
    assert config.load({}, None, environ={"WEB_CONCURRENCY": "auto"}).options.workers == "auto"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"PORT": "http"}, "environment: PORT: expected a TCP port (1 to 65535), got 'http'"),
        ({"PORT": "70000"}, "PORT: expected a TCP port"),
        ({"WEB_CONCURRENCY": "many"}, "environment: WEB_CONCURRENCY: expected an integer"),
    ],
)
def test_bad_platform_variables_are_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load({}, None, environ=environ)
    assert message in str(caught.value)
