"""dukatd.config: defaults, precedence flags > DUKATD_* > TOML > defaults, and errors that name
the flag, variable or key at fault."""

from __future__ import annotations

import ast
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import dukatd
from dukat.core.breaker import CircuitBreakerConfig
from dukatd.address import TcpAddress, UnixAddress, parse_address
from dukatd.config import (
    Config,
    ConfigError,
    build_parser,
    default_listen,
    default_max_concurrency,
    default_state_dir,
    parse_args,
)
from dukatd.options import OPTIONS

HOME = {"HOME": "/home/ann"}


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dukatd.toml"
    path.write_text(text)
    return path


def error_of(argv: list[str], environ: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_args(argv, {**HOME, **environ})
    return caught.value


# -- defaults -------------------------------------------------------------------------------


def test_defaults_with_an_empty_environment():
    config = parse_args([], HOME)
    assert config.listen == (f"unix:/tmp/dukatd-{os.getuid()}/dukatd.sock",)
    assert config.metrics_listen == "127.0.0.1:9464"
    assert config.state_dir == Path("/home/ann/.local/state/dukatd")
    assert config.ephemeral is False
    assert config.allow_exec is False
    assert config.insecure is False
    assert config.max_concurrency == default_max_concurrency() >= 64
    assert dict(config.resources) == {}
    assert config.token_file is None
    assert config.config_file is None
    assert config.sources == {}
    assert config.shutdown_grace + config.kill_grace < 10  # below Docker's stop timeout
    assert (config.worker_heartbeat_interval, config.worker_heartbeat_timeout) == (10.0, 30.0)


@pytest.mark.parametrize(
    ("environ", "socket"),
    [
        ({"RUNTIME_DIRECTORY": "/run/dukatd"}, "/run/dukatd/dukatd.sock"),
        # systemd joins several RuntimeDirectory= entries with ':'; the first is ours
        ({"RUNTIME_DIRECTORY": "/run/dukatd:/run/other"}, "/run/dukatd/dukatd.sock"),
        (
            {"RUNTIME_DIRECTORY": "/run/dukatd", "XDG_RUNTIME_DIR": "/run/user/7"},
            "/run/dukatd/dukatd.sock",
        ),
        ({"XDG_RUNTIME_DIR": "/run/user/7"}, "/run/user/7/dukatd.sock"),
        # the XDG spec: relative values are ignored
        ({"XDG_RUNTIME_DIR": "run/user/7"}, f"/tmp/dukatd-{os.getuid()}/dukatd.sock"),
        ({"XDG_RUNTIME_DIR": ""}, f"/tmp/dukatd-{os.getuid()}/dukatd.sock"),
        ({}, f"/tmp/dukatd-{os.getuid()}/dukatd.sock"),
    ],
)
def test_default_socket_follows_runtime_directory_then_xdg_then_tmp(environ, socket):
    assert default_listen(environ) == (f"unix:{socket}",)
    assert parse_args([], {**HOME, **environ}).unix_socket_paths == (Path(socket),)


@pytest.mark.parametrize(
    ("environ", "state"),
    [
        ({"STATE_DIRECTORY": "/var/lib/dukatd"}, "/var/lib/dukatd"),
        ({"STATE_DIRECTORY": "/var/lib/dukatd", "XDG_STATE_HOME": "/s"}, "/var/lib/dukatd"),
        ({"XDG_STATE_HOME": "/home/ann/.state"}, "/home/ann/.state/dukatd"),
        ({"XDG_STATE_HOME": "relative"}, "/home/ann/.local/state/dukatd"),
        ({}, "/home/ann/.local/state/dukatd"),
    ],
)
def test_default_state_dir_follows_state_directory_then_xdg_then_home(environ, state):
    assert default_state_dir({**HOME, **environ}) == Path(state)
    assert parse_args([], {**HOME, **environ}).state_dir == Path(state)


# -- precedence -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "variable", "key", "field", "values"),
    [
        (
            ["--max-concurrency", "7"],
            {"DUKATD_MAX_CONCURRENCY": "5"},
            "max_concurrency = 3",
            "max_concurrency",
            (7, 5, 3),
        ),
        (
            ["--listen", "unix:/run/a.sock", "--listen", "127.0.0.1:7000"],
            {"DUKATD_LISTEN": "unix:/run/b.sock, 127.0.0.1:7001"},
            'listen = ["unix:/run/c.sock"]',
            "listen",
            (
                ("unix:/run/a.sock", "127.0.0.1:7000"),
                ("unix:/run/b.sock", "127.0.0.1:7001"),
                ("unix:/run/c.sock",),
            ),
        ),
        (
            ["--no-allow-exec"],
            {"DUKATD_ALLOW_EXEC": "yes"},
            "allow_exec = false",
            "allow_exec",
            (False, True, False),
        ),
        (
            ["--resource", "cpu=4", "--resource", "licences=2"],
            {"DUKATD_RESOURCES": "gpu=1"},
            "[resources]\ncpu = 0.5",
            "resources",
            ({"cpu": 4.0, "licences": 2.0}, {"gpu": 1.0}, {"cpu": 0.5}),
        ),
        (
            ["--metrics-listen", "off"],
            {"DUKATD_METRICS_LISTEN": "127.0.0.1:9000"},
            'metrics_listen = "[::1]:9001"',
            "metrics_listen",
            (None, "127.0.0.1:9000", "[::1]:9001"),
        ),
        (
            ["--shutdown-grace", "500ms"],
            {"DUKATD_SHUTDOWN_GRACE": "1m"},
            'shutdown_grace = "3s"',
            "shutdown_grace",
            (0.5, 60.0, 3.0),
        ),
        (
            ["--max-message-bytes", "8MiB"],
            {"DUKATD_MAX_MESSAGE_BYTES": "65536"},
            "max_message_bytes = 2048",
            "max_message_bytes",
            (8 * 1024 * 1024, 65536, 2048),
        ),
    ],
)
def test_flags_beat_variables_beat_the_file_beat_defaults(
    tmp_path, flag, variable, key, field, values
):
    path = toml(tmp_path, key + "\n")
    with_file = {**HOME, "DUKATD_CONFIG": str(path)}
    from_flag, from_variable, from_file = values

    config = parse_args(flag, {**with_file, **variable})
    assert getattr(config, field) == from_flag
    assert config.sources[field] == build_flag(flag)

    config = parse_args([], {**with_file, **variable})
    assert getattr(config, field) == from_variable
    assert config.sources[field] == next(iter(variable))

    config = parse_args([], with_file)
    assert getattr(config, field) == from_file
    assert config.sources[field] == f"{field} in {path}"

    assert field not in parse_args([], HOME).sources  # default


def build_flag(argv: list[str]) -> str:
    return "--allow-exec" if argv[0] == "--no-allow-exec" else argv[0]


def test_an_option_comes_whole_from_one_source(tmp_path):
    # Lists and tables are replaced, not merged: what the flags say is what is served.
    path = toml(tmp_path, 'listen = ["unix:/run/file.sock"]\n[resources]\ncpu = 2\ngpu = 1\n')
    config = parse_args(["--config", str(path), "--resource", "cpu=8"], HOME)
    assert dict(config.resources) == {"cpu": 8.0}
    assert config.listen == ("unix:/run/file.sock",)


def test_config_flag_beats_the_config_variable(tmp_path):
    chosen = toml(tmp_path, "max_concurrency = 11\n")
    other = tmp_path / "other.toml"
    other.write_text("max_concurrency = 12\n")
    config = parse_args(["--config", str(chosen)], {**HOME, "DUKATD_CONFIG": str(other)})
    assert config.max_concurrency == 11
    assert config.config_file == chosen
    assert config.sources["config_file"] == "--config"


def test_an_empty_variable_counts_as_unset():
    config = parse_args([], {**HOME, "DUKATD_MAX_CONCURRENCY": "", "DUKATD_LISTEN": " "})
    assert config.max_concurrency == default_max_concurrency()


def test_a_whole_file(tmp_path):
    path = toml(
        tmp_path,
        """
        listen = ["unix:/run/dukatd/dukatd.sock", "127.0.0.1:50051"]
        metrics_listen = "off"
        state_dir = "/var/lib/dukatd"
        ephemeral = true
        allow_exec = true
        max_concurrency = 16
        token_file = "/etc/dukatd/token"
        max_tasks_per_job = 5000
        event_log_length = 100
        retain_finished_jobs = 10
        finished_job_ttl = 60
        max_watch_streams = 50
        max_watch_streams_per_client = 5
        keepalive_time = "1m"
        kill_grace = 1.5
        log_level = "debug"

        [resources]
        cpu = 4
        licences = 2

        [breakers.payments]
        failure_threshold = 3
        timeout_seconds = 30
        """,
    )
    config = parse_args(["--config", str(path)], HOME)
    assert config.listen == ("unix:/run/dukatd/dukatd.sock", "127.0.0.1:50051")
    assert config.addresses == (
        UnixAddress(Path("/run/dukatd/dukatd.sock")),
        TcpAddress("127.0.0.1", 50051),
    )
    assert config.metrics_listen is None and config.metrics_address is None
    assert config.state_dir == Path("/var/lib/dukatd")
    assert config.ephemeral and config.allow_exec
    assert config.max_concurrency == 16
    assert config.token_file == Path("/etc/dukatd/token")
    assert (config.max_tasks_per_job, config.event_log_length) == (5000, 100)
    assert (config.retain_finished_jobs, config.finished_job_ttl) == (10, 60.0)
    assert (config.max_watch_streams, config.max_watch_streams_per_client) == (50, 5)
    assert (config.keepalive_time, config.kill_grace) == (60.0, 1.5)
    assert config.log_level == "DEBUG"
    assert dict(config.resources) == {"cpu": 4.0, "licences": 2.0}
    assert config.breakers == {
        "payments": CircuitBreakerConfig(failure_threshold=3, timeout_seconds=30)
    }


# -- errors name the culprit ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "environ", "culprit", "words"),
    [
        (["--max-concurrency", "many"], {}, "--max-concurrency", "whole number"),
        (["--max-concurrency", "0"], {}, "--max-concurrency", "at least 1"),
        ([], {"DUKATD_MAX_CONCURRENCY": "many"}, "DUKATD_MAX_CONCURRENCY", "whole number"),
        ([], {"DUKATD_MAX_CONCURRENCY": "-2"}, "DUKATD_MAX_CONCURRENCY", "at least 1"),
        ([], {"DUKATD_ALLOW_EXEC": "maybe"}, "DUKATD_ALLOW_EXEC", "true or false"),
        (["--listen", "nowhere"], {}, "--listen", "unix:/path or host:port"),
        (["--listen", "::1:80"], {}, "--listen", "brackets"),
        (["--listen", "127.0.0.1:99999"], {}, "--listen", "0 to 65535"),
        (["--listen", "unix:"], {}, "--listen", "needs a path"),
        (["--listen", "unix-abstract:x"], {}, "--listen", "abstract"),
        (["--listen", "unix:/" + "x" * 120], {}, "--listen", "107"),
        (["--listen", "unix:/a.sock", "--listen", "unix:/a.sock"], {}, "--listen", "twice"),
        ([], {"DUKATD_LISTEN": "unix:/a.sock,bad"}, "DUKATD_LISTEN", "'bad'"),
        (["--metrics-listen", "9464"], {}, "--metrics-listen", "HOST:PORT"),
        (["--resource", "cpu"], {}, "--resource", "NAME=CAPACITY"),
        (["--resource", "cpu=x"], {}, "--resource", "'cpu' must be a number"),
        (["--resource", "cpu=-1"], {}, "--resource", ">= 0"),
        (["--resource", "cpu=1", "--resource", "cpu=2"], {}, "--resource", "twice"),
        (["--resource", "custom=1"], {}, "--resource", "custom"),
        ([], {"DUKATD_RESOURCES": "a b=1"}, "DUKATD_RESOURCES", "not a resource name"),
        (
            ["--max-watch-streams-per-client", "0"],
            {},
            "--max-watch-streams-per-client",
            "at least 1",
        ),
        ([], {"DUKATD_MAX_WATCH_STREAMS": "lots"}, "DUKATD_MAX_WATCH_STREAMS", "whole number"),
        (["--shutdown-grace", "soon"], {}, "--shutdown-grace", "seconds"),
        (["--keepalive-time", "0"], {}, "--keepalive-time", ">= 0.001"),
        (
            ["--worker-heartbeat-interval", "30s"],
            {},
            "--worker-heartbeat-interval",
            "shorter than --worker-heartbeat-timeout (30s), not 30s",
        ),
        (
            ["--worker-heartbeat-timeout", "5s"],
            {"DUKATD_WORKER_HEARTBEAT_INTERVAL": "10s"},
            "--worker-heartbeat-timeout",
            "longer than --worker-heartbeat-interval (10s), not 5s",
        ),
        (["--max-message-bytes", "64MB"], {}, "--max-message-bytes", "64MiB"),
        (["--max-message-bytes", "4GiB"], {}, "--max-message-bytes", "grpc"),
        (["--max-result-bytes", "-1"], {}, "--max-result-bytes", "size in bytes"),
        (["--log-level", "loud"], {}, "--log-level", "DEBUG"),
        (["--tls-cert-file", "/c.pem"], {}, "--tls-cert-file", "--tls-key-file"),
        ([], {"DUKATD_TLS_KEY_FILE": "/k.pem"}, "DUKATD_TLS_KEY_FILE", "--tls-cert-file"),
        (["--bogus"], {}, "command line", "--bogus"),
        (["--max"], {}, "command line", "--max"),  # no abbreviations
        ([], {"DUKATD_MAX_CONCURENCY": "3"}, "DUKATD_MAX_CONCURENCY", "DUKATD_MAX_CONCURRENCY"),
        (["--config", "/nonexistent/dukatd.toml"], {}, "--config", "/nonexistent/dukatd.toml"),
        ([], {"DUKATD_CONFIG": "/nonexistent/d.toml"}, "DUKATD_CONFIG", "/nonexistent/d.toml"),
    ],
)
def test_errors_name_the_flag_or_variable(argv, environ, culprit, words):
    error = error_of(argv, environ)
    assert str(error).startswith(f"{culprit}: "), str(error)
    assert words in str(error)
    assert error.source == culprit


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("max_concurrency = 0", "max_concurrency", "at least 1"),
        ('max_concurrency = "8"', "max_concurrency", "whole number"),
        ("max_concurrency = true", "max_concurrency", "whole number"),
        ("allow_exec = 1", "allow_exec", "true or false"),
        ("listen = [1]", "listen", "list of addresses"),
        ('listen = ["0.0.0.0:80"]', "listen", "--insecure"),
        ("resources = 4", "resources", "table"),
        ('[resources]\ncpu = "4"', "resources", "must be a number"),
        ("[breakers.db]\nfailure_threshold = 0", "breakers", "breakers.db"),
        ("[breakers.db]\nfailures = 3", "breakers", "did you mean 'failure_threshold'"),
        ('[breakers.db]\nfailure_threshold = "3"', "breakers", "whole number"),
        ("[breakers.db]\ntimeout_seconds = 1e300", "breakers", "breakers.db.timeout"),
        ("[breakers.db]\ntimeout_seconds = inf", "breakers", "365 days"),
        (
            "[breakers.db]\nfailure_rate_threshold = 0.5\nwindow_size = 100000",
            "breakers",
            "breakers.db.window_size",
        ),
        (f"[breakers.{'b' * 201}]", "breakers", "at most 200 characters"),
        ("max_concurency = 3", "max_concurency", "did you mean 'max_concurrency'"),
        ('config_file = "/x.toml"', "config_file", "unknown key"),
        ('shutdown_grace = "forever"', "shutdown_grace", "seconds"),
    ],
)
def test_errors_in_the_file_name_the_key_and_the_file(tmp_path, text, key, words):
    path = toml(tmp_path, text + "\n")
    error = error_of(["--config", str(path)], {})
    assert str(error).startswith(f"{key} in {path}: "), str(error)
    assert words in str(error)


def test_a_file_that_is_not_toml(tmp_path):
    path = toml(tmp_path, "max_concurrency = = 3\n")
    error = error_of([], {"DUKATD_CONFIG": str(path)})
    assert str(error).startswith("DUKATD_CONFIG: ")
    assert "not valid TOML" in str(error) and str(path) in str(error)


def test_the_problem_is_also_a_field_violation():
    error = error_of(["--max-concurrency", "0"], {})
    assert error.option == "max_concurrency"
    assert [v.field for v in error.violations] == ["max_concurrency"]


# -- beyond loopback ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address", ["127.0.0.1:5000", "127.9.9.9:5000", "[::1]:5000", "localhost:5000"]
)
def test_loopback_tcp_needs_nothing_more(address):
    assert parse_args(["--listen", address], HOME).addresses[0].is_loopback


@pytest.mark.parametrize("address", ["0.0.0.0:5000", "[::]:5000", "10.1.2.3:5000", "db:5000"])
def test_tcp_beyond_loopback_needs_tls_and_a_token_or_insecure(address):
    error = error_of(["--listen", address], {})
    assert str(error).startswith("--listen: ")
    assert "--tls-cert-file" in str(error) and "--token-file" in str(error)
    assert "--insecure" in str(error)

    error = error_of(["--listen", address, "--token-file", "/t"], {})
    assert "--tls-cert-file" in str(error) and "--token-file" not in str(error)

    tls = ["--tls-cert-file", "/c.pem", "--tls-key-file", "/k.pem"]
    error = error_of(["--listen", address, *tls], {})
    assert "--token-file" in str(error) and "--tls-cert-file" not in str(error)

    assert parse_args(["--listen", address, *tls, "--token-file", "/t"], HOME)
    assert parse_args(["--listen", address, "--insecure"], HOME).insecure
    assert parse_args(["--listen", address], {**HOME, "DUKATD_INSECURE": "1"}).insecure


@pytest.mark.parametrize("address", ["127.0.0.1:5000", "[::1]:5000", "localhost:5000"])
def test_exec_over_loopback_tcp_needs_a_token_or_insecure(address):
    # TCP has no file permissions: every local user can connect, and exec runs commands as
    # the daemon's user. The unix socket's 0660 is what keeps them out; a token must here.
    error = error_of(["--listen", address, "--allow-exec"], {})
    assert str(error).startswith("--listen: ")
    assert "--token-file" in str(error) and "--insecure" in str(error)
    assert "every local user" in str(error)
    error = error_of(["--listen", address], {"DUKATD_ALLOW_EXEC": "1"})
    assert "--token-file" in str(error)

    assert parse_args(["--listen", address, "--allow-exec", "--token-file", "/t"], HOME)
    assert parse_args(["--listen", address, "--allow-exec", "--insecure"], HOME).insecure
    assert parse_args(["--listen", address], HOME)  # no exec: nothing to run
    assert parse_args(["--listen", "unix:/run/d.sock", "--allow-exec"], HOME)


# -- the dataclass itself -------------------------------------------------------------------


def test_config_is_frozen_and_its_tables_read_only():
    config = Config(listen=("unix:/run/x.sock",), resources={"cpu": 2})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_concurrency = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.resources["cpu"] = 3  # type: ignore[index]
    assert config == Config(listen=("unix:/run/x.sock",), resources={"cpu": 2.0})


def test_config_made_in_code_is_validated_and_names_the_field():
    with pytest.raises(ConfigError, match=r"^max_concurrency: must be at least 1"):
        Config(listen=("unix:/run/x.sock",), max_concurrency=0)
    with pytest.raises(ConfigError, match=r"^listen: must be a sequence"):
        Config(listen="unix:/run/x.sock")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^listen: needs at least one"):
        Config(listen=())


def test_relative_paths_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = parse_args(["--listen", "unix:d.sock", "--state-dir", "state"], HOME)
    assert config.listen == (f"unix:{tmp_path}/d.sock",)
    assert config.state_dir == tmp_path / "state"


def test_grpc_options_carry_the_limits():
    config = parse_args(["--max-message-bytes", "8MiB", "--keepalive-time", "20s"], HOME)
    options = dict(config.grpc_server_options())
    assert options["grpc.max_receive_message_length"] == 8 * 1024 * 1024
    assert options["grpc.max_send_message_length"] == 8 * 1024 * 1024
    assert options["grpc.keepalive_time_ms"] == 20_000
    assert options["grpc.so_reuseport"] == 0
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 10_000
    assert options["grpc.http2.max_ping_strikes"] == 2


def test_read_token(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    token.chmod(0o644)
    with pytest.raises(ConfigError, match=r"^--token-file: .* is mode 0644: other users may read"):
        parse_args(["--token-file", str(token)], HOME).read_token()
    token.chmod(0o600)
    assert parse_args(["--token-file", str(token)], HOME).read_token() == "s3cret"
    assert parse_args([], HOME).read_token() is None
    token.write_text("  \n")
    with pytest.raises(ConfigError, match=r"^DUKATD_TOKEN_FILE: .* is empty"):
        parse_args([], {**HOME, "DUKATD_TOKEN_FILE": str(token)}).read_token()
    with pytest.raises(ConfigError, match=r"^--token-file: cannot read"):
        parse_args(["--token-file", str(tmp_path / "missing")], HOME).read_token()


def test_addresses_print_canonically():
    assert str(parse_address("unix:///run/x.sock")) == "unix:/run/x.sock"
    assert str(parse_address(" [::1]:80 ")) == "[::1]:80"
    assert parse_address("[::ffff:127.0.0.1]:80").is_loopback  # type: ignore[union-attr]


# -- help -----------------------------------------------------------------------------------


def test_help_documents_every_flag_and_its_variable(capsys):
    with pytest.raises(SystemExit) as exited:
        parse_args(["--help"], HOME)
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for option in OPTIONS:
        if option.flag is None:
            assert option.field in text  # TOML only: named in the epilog
            continue
        assert option.flag in text
        assert f"[env: {option.env}]" in text
        assert "Default:" in option.help


def test_every_config_field_is_an_option_and_every_option_a_field():
    fields = {f.name for f in dataclasses.fields(Config)} - {"sources"}
    assert fields == {option.field for option in OPTIONS}
    assert len({o.env for o in OPTIONS if o.env}) == len([o for o in OPTIONS if o.env])


def test_build_parser_leaves_out_flags_not_given():
    assert vars(build_parser().parse_args([])) == {}


def test_the_task_limit_help_names_the_status_the_daemon_answers():
    # Over --max-tasks-per-job, Submit fails INVALID_ARGUMENT (tests/dukatd/
    # test_scheduler_service.py, "over the per-job task limit"), not RESOURCE_EXHAUSTED.
    (option,) = [o for o in OPTIONS if o.field == "max_tasks_per_job"]
    assert "INVALID_ARGUMENT" in option.help
    assert "RESOURCE_EXHAUSTED" not in option.help


# -- one name per concept ----------------------------------------------------------------------

# An option keeps its name on the way in, but for the prefix that names its owner, dropped on
# the owner itself: the work hub's heartbeat_interval (as the wire's WorkerWelcome says it),
# the journal's sync and max_bytes.
OWNER_PREFIXES = ("worker_", "journal_")


def option_keywords() -> Iterator[tuple[str, str, str]]:
    """(where, keyword, option) for each keyword argument in the daemon's source given an
    option as it is (`config.X`, or bounded by max or min), not a value derived from it."""
    for path in sorted(Path(dukatd.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.keyword) or node.arg is None:
                continue
            value = node.value
            if isinstance(value, ast.Call) and getattr(value.func, "id", None) in ("max", "min"):
                value = next((a for a in value.args if isinstance(a, ast.Attribute)), value)
            if isinstance(value, ast.Attribute) and getattr(value.value, "id", None) == "config":
                yield f"{path.name}:{node.lineno}", node.arg, value.attr


def test_the_daemon_hands_each_option_on_under_its_own_name():
    found = list(option_keywords())
    assert len(found) > 20  # the scan sees the daemon's wiring
    for where, keyword, option in found:
        owner, _, rest = option.partition("_")
        dropped = f"{owner}_" in OWNER_PREFIXES and rest == keyword
        assert keyword == option or dropped, f"{where}: {keyword}=config.{option}"
