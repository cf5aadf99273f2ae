"""The option table of `dukatd`: each option's flag, variable, help, and how its value is read.

`dukatd.config` builds the argparse parser and reads the environment and the TOML file from
this table, so an option is declared once. Readers here only convert text (a flag, a variable)
or a TOML value to a Python value, raising `BadValue` with what is wrong; range checks and the
name of the culprit belong to `dukatd.config`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dukat import convert
from dukat.core.breaker import CircuitBreakerConfig
from dukat.core.resources import BUILTIN_RESOURCES
from dukat.defaults import parse_duration
from dukat.errors import BadValue, ValidationError

__all__ = [
    "BUILTIN_NAMES",
    "BY_ENV",
    "BY_FIELD",
    "EPILOG",
    "LOG_LEVELS",
    "MIB",
    "OPTIONS",
    "TOML_KEYS",
    "BadValue",
    "Option",
    "did_you_mean",
]

MIB = 1024 * 1024
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
BUILTIN_NAMES = ", ".join(t.value for t in BUILTIN_RESOURCES)


@dataclass(frozen=True)
class Option:
    field: str
    flag: str | None  # None: TOML only
    env: str | None
    help: str
    metavar: str | None = None  # None for on/off flags
    repeatable: bool = False
    # Strings from a flag or a variable; values as TOML typed them.
    from_text: Callable[[str], Any] = str
    from_toml: Callable[[Any], Any] = str


def _text_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise BadValue(f"expected true or false (1/0, yes/no, on/off), not {text!r}")


def _toml_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise BadValue(f"expected true or false, not {value!r}")
    return value


def _text_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise BadValue(f"expected a whole number, not {text!r}") from None


def _toml_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadValue(f"expected a whole number, not {value!r}")
    return value


_SIZE = re.compile(r"(\d+)\s*(B|KiB|MiB|GiB)?")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": MIB, "GiB": 1024 * MIB}


def _text_size(text: str) -> int:
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise BadValue(
            f"expected a size in bytes, like 65536 or 64MiB (KiB, MiB, GiB), not {text!r}"
        )
    return int(match[1]) * _SIZE_UNITS[match[2]]


def _toml_size(value: object) -> int:
    return _text_size(value) if isinstance(value, str) else _toml_int(value)


def _text_duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise BadValue(str(error)) from None


def _toml_duration(value: object) -> float:
    if isinstance(value, str):
        return _text_duration(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadValue(f"expected seconds, like 30 or '30s', not {value!r}")
    return float(value)


def _toml_str(value: object) -> str:
    if not isinstance(value, str):
        raise BadValue(f"expected a string, not {value!r}")
    return value


def _text_listen(text: str) -> tuple[str, ...]:
    # One address per flag; the variable takes a comma-separated list.
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _toml_listen(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadValue(f"expected a list of addresses, like ['unix:/run/x.sock'], not {value!r}")
    return tuple(value)


def _text_metrics(text: str) -> str | None:
    return None if text.strip().lower() == "off" else text


def _toml_metrics(value: object) -> str | None:
    return _text_metrics(_toml_str(value))


def _text_resources(text: str) -> dict[str, float]:
    resources: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, equals, capacity = item.partition("=")
        name = name.strip()
        if not equals or not name:
            raise BadValue(f"expected NAME=CAPACITY, like cpu=4 or licences=2, not {item!r}")
        if name in resources:
            raise BadValue(f"resource {name!r} is given twice")
        try:
            resources[name] = float(capacity)
        except ValueError:
            raise BadValue(f"capacity of {name!r} must be a number, not {capacity!r}") from None
    return resources


def _toml_resources(value: object) -> dict[str, float]:
    if not isinstance(value, dict):
        raise BadValue(f"expected a table of NAME = CAPACITY, like {{ cpu = 4 }}, not {value!r}")
    for name, capacity in value.items():
        if isinstance(capacity, bool) or not isinstance(capacity, (int, float)):
            raise BadValue(f"capacity of {name!r} must be a number, not {capacity!r}")
    return dict(value)


def _toml_breakers(value: object) -> dict[str, CircuitBreakerConfig]:
    if not isinstance(value, dict):
        raise BadValue("expected tables, like [breakers.payments] with failure_threshold = 5")
    hints = typing.get_type_hints(CircuitBreakerConfig)
    known = [f.name for f in dataclasses.fields(CircuitBreakerConfig)]
    breakers: dict[str, CircuitBreakerConfig] = {}
    for name, table in value.items():
        if not isinstance(table, dict):
            raise BadValue(f"breakers.{name} must be a table, not {table!r}")
        for key, setting in table.items():
            if key not in known:
                raise BadValue(f"breakers.{name}: unknown key {key!r}{did_you_mean(key, known)}")
            whole = hints[key] in (int, int | None)
            kinds = (int,) if whole else (int, float)
            if isinstance(setting, bool) or not isinstance(setting, kinds):
                kind = "a whole number" if whole else "a number"
                raise BadValue(f"breakers.{name}.{key} must be {kind}, not {setting!r}")
        if len(name) > convert.MAX_BREAKER_NAME:
            raise BadValue(f"a breaker's name has at most {convert.MAX_BREAKER_NAME} characters")
        try:
            config = CircuitBreakerConfig(**table)
        except ValidationError as error:
            raise BadValue(f"breakers.{name}: {error}") from None

        def refuse(field: str, description: str, name: str = name) -> None:
            key = field.rpartition(".")[2]  # the wire's name of the setting
            raise BadValue(f"breakers.{name}.{_WIRE_KEYS.get(key, key)}: {description}")

        # The same bounds as a breaker configured over the API.
        breakers[name] = convert.breaker_config_within_bounds(config, refuse)
    return breakers


_WIRE_KEYS = {"timeout": "timeout_seconds"}


def _path_text(text: str) -> str:
    return text  # made absolute by Config


OPTIONS: tuple[Option, ...] = (
    Option(
        field="listen",
        flag="--listen",
        env="DUKATD_LISTEN",
        help="address to serve, unix:/path or host:port (repeat for several; the variable takes a "
        "comma-separated list). TCP beyond loopback needs TLS and a token, TCP with --allow-exec "
        "a token, or --insecure. "
        "Default: unix:dukatd.sock in $RUNTIME_DIRECTORY, else $XDG_RUNTIME_DIR, else "
        "/tmp/dukatd-$UID/",
        metavar="ADDR",
        repeatable=True,
        from_text=_text_listen,
        from_toml=_toml_listen,
    ),
    Option(
        field="metrics_listen",
        flag="--metrics-listen",
        env="DUKATD_METRICS_LISTEN",
        help="HOST:PORT of the Prometheus /metrics endpoint, or 'off'. Default: 127.0.0.1:9464",
        metavar="HOST:PORT",
        from_text=_text_metrics,
        from_toml=_toml_metrics,
    ),
    Option(
        field="state_dir",
        flag="--state-dir",
        env="DUKATD_STATE_DIR",
        help="directory of the journal and the state lock. Default: $STATE_DIRECTORY, else "
        "$XDG_STATE_HOME/dukatd, else ~/.local/state/dukatd",
        metavar="DIR",
        from_text=_path_text,
        from_toml=_toml_str,
    ),
    Option(
        field="ephemeral",
        flag="--ephemeral",
        env="DUKATD_EPHEMERAL",
        help="keep jobs in memory only: no journal, nothing survives a restart. Default: off",
        from_text=_text_bool,
        from_toml=_toml_bool,
    ),
    Option(
        field="journal_sync",
        flag="--journal-sync",
        env="DUKATD_JOURNAL_SYNC",
        help="'normal': each journal commit survives a crash or kill of dukatd, and the last "
        "few milliseconds of commits may be lost on power loss; 'full': each commit is also "
        "fsynced, and survives power loss. Default: normal",
        metavar="MODE",
        from_text=str,
        from_toml=_toml_str,
    ),
    Option(
        field="journal_max_bytes",
        flag="--journal-max-bytes",
        env="DUKATD_JOURNAL_MAX_BYTES",
        help="largest size of the journal; new jobs may fill three quarters of it (the rest "
        "is for the jobs accepted before to finish), past that Submit fails with "
        "RESOURCE_EXHAUSTED, as on a full disk. 0: no limit. Default: 0",
        metavar="SIZE",
        from_text=_text_size,
        from_toml=_toml_size,
    ),
    Option(
        field="allow_exec",
        flag="--allow-exec",
        env="DUKATD_ALLOW_EXEC",
        help="accept exec tasks, which run argv as subprocesses with the daemon's user and rights. "
        "Default: off (exec tasks are refused with PERMISSION_DENIED)",
        from_text=_text_bool,
        from_toml=_toml_bool,
    ),
    Option(
        field="max_concurrency",
        flag="--max-concurrency",
        env="DUKATD_MAX_CONCURRENCY",
        help="tasks running at once across every job. Default: max(64, 8 x CPUs available)",
        metavar="N",
        from_text=_text_int,
        from_toml=_toml_int,
    ),
    Option(
        field="resources",
        flag="--resource",
        env="DUKATD_RESOURCES",
        help=f"capacity of a resource, NAME=CAPACITY (repeat for several; the variable takes a "
        f"comma-separated list). Built-in names {BUILTIN_NAMES} default to 1.0 (the whole "
        f"host); any other name makes a custom resource (capacity 4 = at most 4 at once). "
        f"Default: the built-ins only",
        metavar="NAME=CAPACITY",
        repeatable=True,
        from_text=_text_resources,
        from_toml=_toml_resources,
    ),
    Option(
        field="breakers",
        flag=None,
        env=None,
        help="named circuit breakers, [breakers.NAME] tables in the TOML file only",
        from_text=str,
        from_toml=_toml_breakers,
    ),
    Option(
        field="token_file",
        flag="--token-file",
        env="DUKATD_TOKEN_FILE",
        help="file holding a bearer token every client must send (health checks are exempt); "
        "refused if other users may read it (mode 0600, or 0640 for its group). "
        "Default: none",
        metavar="FILE",
        from_text=_path_text,
        from_toml=_toml_str,
    ),
    Option(
        field="tls_cert_file",
        flag="--tls-cert-file",
        env="DUKATD_TLS_CERT_FILE",
        help="PEM certificate chain for TCP addresses. Default: none (plaintext)",
        metavar="FILE",
        from_text=_path_text,
        from_toml=_toml_str,
    ),
    Option(
        field="tls_key_file",
        flag="--tls-key-file",
        env="DUKATD_TLS_KEY_FILE",
        help="PEM private key of --tls-cert-file. Default: none",
        metavar="FILE",
        from_text=_path_text,
        from_toml=_toml_str,
    ),
    Option(
        field="insecure",
        flag="--insecure",
        env="DUKATD_INSECURE",
        help="allow TCP beyond loopback without TLS or without a token, and exec tasks over TCP "
        "without a token. Default: off",
        from_text=_text_bool,
        from_toml=_toml_bool,
    ),
    Option(
        field="max_tasks_per_job",
        flag="--max-tasks-per-job",
        env="DUKATD_MAX_TASKS_PER_JOB",
        help="tasks one Submit may carry; more is INVALID_ARGUMENT. Default: 100000",
        metavar="N",
        from_text=_text_int,
        from_toml=_toml_int,
    ),
    Option(
        field="max_tasks",
        flag="--max-tasks",
        env="DUKATD_MAX_TASKS",
        help="tasks held in memory, of every job (about 1.7 KB each: the default is about "
        "850 MB). A Submit that the unfinished jobs leave no room for is RESOURCE_EXHAUSTED; "
        "finished jobs are dropped, oldest first, to make room. Default: 500000",
        metavar="N",
        from_text=_text_int,
        from_toml=_toml_int,
    ),
    Option(
        field="max_message_bytes",
        flag="--max-message-bytes",
        env="DUKATD_MAX_MESSAGE_BYTES",
        help="largest gRPC message received or sent (fits a 100000-task Submit). Default: 64MiB",
        metavar="SIZE",
        from_text=_text_size,
        from_toml=_toml_size,
    ),
    Option(
        field="max_result_bytes",
        flag="--max-result-bytes",
        env="DUKATD_MAX_RESULT_BYTES",
        help="largest result a worker may return for one task. Default: 1MiB",
        metavar="SIZE",
        from_text=_text_size,
        from_toml=_toml_size,
    ),
    Option(
        field="output_tail_bytes",
        flag="--output-tail-bytes",
        env="DUKATD_OUTPUT_TAIL_BYTES",
        help="bytes of an exec task's stdout and of its stderr kept after it ends. Default: 64KiB",
        metavar="SIZE",
        from_text=_text_size,
        from_toml=_toml_size,
    ),
    Option(
        field="event_log_length",
        flag="--event-log-length",
        env="DUKATD_EVENT_LOG_LENGTH",
        help="events kept per job for Watch replay; a watcher further behind gets a snapshot. "
        "Default: 10000",
        metavar="N",
        from_text=_text_int,
        from_toml=_toml_int,
    ),
    Option(
        field="max_watch_streams",
        flag="--max-watch-streams",
        env="DUKATD_MAX_WATCH_STREAMS",
        help="Watch streams open at once; more is RESOURCE_EXHAUSTED. Default: 1000",
        metavar="N",
        from_text=_text_int,
        from_toml=_toml_int,
    ),
    Option(
        field="max_watch_streams_per_client",
        flag="--max-watch-streams-per-client",
        env="DUKATD_MAX_WATCH_STREAMS_PER_CLIENT",
        help="Watch streams one client may have open at once, so that one cannot take them "
        "all; more is RESOURCE_EXHAUSTED. A client is a dukat-client-id metadata value (the "
        "Python client sends one per connect()), else a peer address. Default: 100",
        metavar="N",
        from_text=_text_int,
        from_toml=_toml_int,
    ),
    Option(
        field="retain_finished_jobs",
        flag="--retain-finished-jobs",
        env="DUKATD_RETAIN_FINISHED_JOBS",
        help="finished jobs kept in memory, oldest dropped first. Default: 1000",
        metavar="N",
        from_text=_text_int,
        from_toml=_toml_int,
    ),
    Option(
        field="finished_job_ttl",
        flag="--finished-job-ttl",
        env="DUKATD_FINISHED_JOB_TTL",
        help="how long a finished job is kept in memory at most. Default: 1h",
        metavar="DURATION",
        from_text=_text_duration,
        from_toml=_toml_duration,
    ),
    Option(
        field="worker_heartbeat_interval",
        flag="--worker-heartbeat-interval",
        env="DUKATD_WORKER_HEARTBEAT_INTERVAL",
        help="how often a worker sends an update on its Work stream, and the daemon a message to "
        "it, each an empty one when there is nothing else. Default: 10s",
        metavar="DURATION",
        from_text=_text_duration,
        from_toml=_toml_duration,
    ),
    Option(
        field="worker_heartbeat_timeout",
        flag="--worker-heartbeat-timeout",
        env="DUKATD_WORKER_HEARTBEAT_TIMEOUT",
        help="a worker silent this long loses its stream and its tasks (interrupted: they run "
        "again); a worker that hears nothing from the daemon this long says hello again. "
        "Longer than the interval. Default: 30s",
        metavar="DURATION",
        from_text=_text_duration,
        from_toml=_toml_duration,
    ),
    Option(
        field="keepalive_time",
        flag="--keepalive-time",
        env="DUKATD_KEEPALIVE_TIME",
        help="interval of the server's keepalive pings on an idle connection. Default: 30s",
        metavar="DURATION",
        from_text=_text_duration,
        from_toml=_toml_duration,
    ),
    Option(
        field="keepalive_timeout",
        flag="--keepalive-timeout",
        env="DUKATD_KEEPALIVE_TIMEOUT",
        help="wait for a keepalive ack before dropping the connection. Default: 10s",
        metavar="DURATION",
        from_text=_text_duration,
        from_toml=_toml_duration,
    ),
    Option(
        field="keepalive_min_client_interval",
        flag="--keepalive-min-client-interval",
        env="DUKATD_KEEPALIVE_MIN_CLIENT_INTERVAL",
        help="shortest interval between a client's pings the server tolerates (more often gets "
        "GOAWAY too_many_pings). Default: 10s",
        metavar="DURATION",
        from_text=_text_duration,
        from_toml=_toml_duration,
    ),
    Option(
        field="shutdown_grace",
        flag="--shutdown-grace",
        env="DUKATD_SHUTDOWN_GRACE",
        help="on SIGTERM, how long RPCs and running tasks may finish before they are cancelled; "
        "keep grace plus kill grace below the supervisor's stop timeout. Default: 5s",
        metavar="DURATION",
        from_text=_text_duration,
        from_toml=_toml_duration,
    ),
    Option(
        field="kill_grace",
        flag="--kill-grace",
        env="DUKATD_KILL_GRACE",
        help="after SIGTERM to a task's process group, the wait before SIGKILL. Default: 2s",
        metavar="DURATION",
        from_text=_text_duration,
        from_toml=_toml_duration,
    ),
    Option(
        field="log_level",
        flag="--log-level",
        env="DUKATD_LOG_LEVEL",
        help=f"log threshold, one of {', '.join(LOG_LEVELS)}. Default: INFO",
        metavar="LEVEL",
        from_text=str,
        from_toml=_toml_str,
    ),
    Option(
        field="config_file",
        flag="--config",
        env="DUKATD_CONFIG",
        help="TOML file of options (keys named like the options with underscores); flags and "
        "DUKATD_* variables override it. Default: none",
        metavar="FILE.toml",
        from_text=_path_text,
        from_toml=_toml_str,
    ),
)
BY_FIELD = {option.field: option for option in OPTIONS}
BY_ENV = {option.env: option for option in OPTIONS if option.env}
TOML_KEYS = [o.field for o in OPTIONS if o.field != "config_file"]

EPILOG = """\
Precedence: flags, then DUKATD_* environment variables, then the --config file, then defaults;
each option comes whole from the first source that sets it. On/off flags have a --no- form
(--no-allow-exec) to override a variable or the file; variables take 1/0, true/false, yes/no,
on/off. Durations take 500ms, 30s, 5m, 1h or plain seconds; sizes 65536, 64KiB, 64MiB, 1GiB.

In the TOML file, options are top-level keys named like the flags with underscores
(max_concurrency = 64, listen = ["unix:/run/dukatd/dukatd.sock"]); resources is a table
([resources] cpu = 4); circuit breakers are [breakers.NAME] tables with failure_threshold,
timeout_seconds, half_open_max_calls, success_threshold, failure_rate_threshold, window_size.
"""


def did_you_mean(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
