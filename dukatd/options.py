"""The option table of `dukatd`: each option's flag, variable, help, and how its value is read.

`dukatd.config` builds the argparse parser and reads the environment and the TOML file from
this table, so an option is declared once. Its readers (`dukatd.option_values`) only convert
text (a flag, a variable) or a TOML value to a Python value, raising `BadValue` with what is
wrong; range checks and the name of the culprit belong to `dukatd.config_values`' `Config`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dukat.core.resources import BUILTIN_RESOURCES
from dukat.errors import BadValue
from dukatd.option_values import (
    MIB,
    did_you_mean,
    path_text,
    text_bool,
    text_duration,
    text_int,
    text_listen,
    text_metrics,
    text_resources,
    text_size,
    toml_bool,
    toml_breakers,
    toml_duration,
    toml_int,
    toml_listen,
    toml_metrics,
    toml_resources,
    toml_size,
    toml_str,
)

__all__ = [
    "BUILTIN_NAMES",
    "BY_ENV",
    "BY_FIELD",
    "EPILOG",
    "EXECUTORS",
    "LOG_LEVELS",
    "MIB",
    "OPTIONS",
    "TOML_KEYS",
    "BadValue",
    "Option",
    "did_you_mean",
]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
EXECUTORS = ("local", "ray")
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
        from_text=text_listen,
        from_toml=toml_listen,
    ),
    Option(
        field="metrics_listen",
        flag="--metrics-listen",
        env="DUKATD_METRICS_LISTEN",
        help="HOST:PORT of the Prometheus /metrics endpoint, or 'off'. Default: 127.0.0.1:9464",
        metavar="HOST:PORT",
        from_text=text_metrics,
        from_toml=toml_metrics,
    ),
    Option(
        field="state_dir",
        flag="--state-dir",
        env="DUKATD_STATE_DIR",
        help="directory of the journal and the state lock. Default: $STATE_DIRECTORY, else "
        "$XDG_STATE_HOME/dukatd, else ~/.local/state/dukatd",
        metavar="DIR",
        from_text=path_text,
        from_toml=toml_str,
    ),
    Option(
        field="ephemeral",
        flag="--ephemeral",
        env="DUKATD_EPHEMERAL",
        help="keep jobs in memory only: no journal, nothing survives a restart. Default: off",
        from_text=text_bool,
        from_toml=toml_bool,
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
        from_toml=toml_str,
    ),
    Option(
        field="journal_max_bytes",
        flag="--journal-max-bytes",
        env="DUKATD_JOURNAL_MAX_BYTES",
        help="largest size of the journal; new jobs may fill three quarters of it (the rest "
        "is for the jobs accepted before to finish), past that Submit fails with "
        "RESOURCE_EXHAUSTED, as on a full disk. 0: no limit. Default: 0",
        metavar="SIZE",
        from_text=text_size,
        from_toml=toml_size,
    ),
    Option(
        field="allow_exec",
        flag="--allow-exec",
        env="DUKATD_ALLOW_EXEC",
        help="accept exec tasks, which run argv as subprocesses with the daemon's user and rights. "
        "Default: off (exec tasks are refused with PERMISSION_DENIED)",
        from_text=text_bool,
        from_toml=toml_bool,
    ),
    Option(
        field="executor",
        flag="--executor",
        env="DUKATD_EXECUTOR",
        help="where exec tasks run: 'local' (subprocesses of the daemon, on this host) or "
        "'ray' (on the nodes of the Ray cluster at --ray-address, which needs --allow-exec and "
        "pip install 'dukat[ray]'; see docs/scale-out.md). Default: local",
        metavar="NAME",
        from_text=str,
        from_toml=toml_str,
    ),
    Option(
        field="ray_address",
        flag="--ray-address",
        env="DUKATD_RAY_ADDRESS",
        help="the Ray cluster of --executor ray: 'auto' (the one running on this host, or "
        "$RAY_ADDRESS), HOST:PORT of its head, ray://HOST:PORT (Ray Client), or 'local' "
        "(start a Ray of its own on this host, to try things out). Default: auto",
        metavar="ADDRESS",
        from_text=str,
        from_toml=toml_str,
    ),
    Option(
        field="ray_refresh_interval",
        flag="--ray-refresh-interval",
        env="DUKATD_RAY_REFRESH_INTERVAL",
        help="how often the Ray cluster's nodes are looked at: the resource pool's capacities "
        "follow its totals. Default: 10s",
        metavar="DURATION",
        from_text=text_duration,
        from_toml=toml_duration,
    ),
    Option(
        field="ray_connect_timeout",
        flag="--ray-connect-timeout",
        env="DUKATD_RAY_CONNECT_TIMEOUT",
        help="how long connecting to the Ray cluster may take; at start, dukatd waits that "
        "long for it before serving (then serves anyway, and exec tasks wait for the "
        "cluster). Default: 30s",
        metavar="DURATION",
        from_text=text_duration,
        from_toml=toml_duration,
    ),
    Option(
        field="max_concurrency",
        flag="--max-concurrency",
        env="DUKATD_MAX_CONCURRENCY",
        help="tasks running at once across every job. Default: max(64, 8 x CPUs available)",
        metavar="N",
        from_text=text_int,
        from_toml=toml_int,
    ),
    Option(
        field="resources",
        flag="--resource",
        env="DUKATD_RESOURCES",
        help=f"capacity of a resource, NAME=CAPACITY (repeat for several; the variable takes a "
        f"comma-separated list). Built-in names {BUILTIN_NAMES} default to 1.0 (the whole "
        f"host); any other name makes a custom resource (capacity 4 = at most 4 at once). "
        f"With --executor ray the cluster's resources follow its totals in Ray's units, and "
        f"this pins one (docs/scale-out.md). Default: the built-ins only",
        metavar="NAME=CAPACITY",
        repeatable=True,
        from_text=text_resources,
        from_toml=toml_resources,
    ),
    Option(
        field="breakers",
        flag=None,
        env=None,
        help="named circuit breakers, [breakers.NAME] tables in the TOML file only",
        from_text=str,
        from_toml=toml_breakers,
    ),
    Option(
        field="token_file",
        flag="--token-file",
        env="DUKATD_TOKEN_FILE",
        help="file holding a bearer token every client must send (health checks are exempt); "
        "refused if other users may read it (mode 0600, or 0640 for its group). "
        "Default: none",
        metavar="FILE",
        from_text=path_text,
        from_toml=toml_str,
    ),
    Option(
        field="tls_cert_file",
        flag="--tls-cert-file",
        env="DUKATD_TLS_CERT_FILE",
        help="PEM certificate chain for TCP addresses. Default: none (plaintext)",
        metavar="FILE",
        from_text=path_text,
        from_toml=toml_str,
    ),
    Option(
        field="tls_key_file",
        flag="--tls-key-file",
        env="DUKATD_TLS_KEY_FILE",
        help="PEM private key of --tls-cert-file. Default: none",
        metavar="FILE",
        from_text=path_text,
        from_toml=toml_str,
    ),
    Option(
        field="insecure",
        flag="--insecure",
        env="DUKATD_INSECURE",
        help="allow TCP beyond loopback without TLS or without a token, and exec tasks over TCP "
        "without a token. Default: off",
        from_text=text_bool,
        from_toml=toml_bool,
    ),
    Option(
        field="max_tasks_per_job",
        flag="--max-tasks-per-job",
        env="DUKATD_MAX_TASKS_PER_JOB",
        help="tasks one Submit may carry; more is INVALID_ARGUMENT. Default: 100000",
        metavar="N",
        from_text=text_int,
        from_toml=toml_int,
    ),
    Option(
        field="max_tasks",
        flag="--max-tasks",
        env="DUKATD_MAX_TASKS",
        help="tasks held in memory, of every job (about 1.7 KB each: the default is about "
        "850 MB). A Submit that the unfinished jobs leave no room for is RESOURCE_EXHAUSTED; "
        "finished jobs are dropped, oldest first, to make room. Default: 500000",
        metavar="N",
        from_text=text_int,
        from_toml=toml_int,
    ),
    Option(
        field="max_message_bytes",
        flag="--max-message-bytes",
        env="DUKATD_MAX_MESSAGE_BYTES",
        help="largest gRPC message received or sent (fits a 100000-task Submit). Default: 64MiB",
        metavar="SIZE",
        from_text=text_size,
        from_toml=toml_size,
    ),
    Option(
        field="max_result_bytes",
        flag="--max-result-bytes",
        env="DUKATD_MAX_RESULT_BYTES",
        help="largest result a worker may return for one task. Default: 1MiB",
        metavar="SIZE",
        from_text=text_size,
        from_toml=toml_size,
    ),
    Option(
        field="output_tail_bytes",
        flag="--output-tail-bytes",
        env="DUKATD_OUTPUT_TAIL_BYTES",
        help="bytes of an exec task's stdout and of its stderr kept after it ends. Default: 64KiB",
        metavar="SIZE",
        from_text=text_size,
        from_toml=toml_size,
    ),
    Option(
        field="event_log_length",
        flag="--event-log-length",
        env="DUKATD_EVENT_LOG_LENGTH",
        help="events kept per job for Watch replay; a watcher further behind gets a snapshot. "
        "Default: 10000",
        metavar="N",
        from_text=text_int,
        from_toml=toml_int,
    ),
    Option(
        field="max_watch_streams",
        flag="--max-watch-streams",
        env="DUKATD_MAX_WATCH_STREAMS",
        help="Watch streams open at once; more is RESOURCE_EXHAUSTED. Default: 1000",
        metavar="N",
        from_text=text_int,
        from_toml=toml_int,
    ),
    Option(
        field="max_watch_streams_per_client",
        flag="--max-watch-streams-per-client",
        env="DUKATD_MAX_WATCH_STREAMS_PER_CLIENT",
        help="Watch streams one client may have open at once, so that one cannot take them "
        "all; more is RESOURCE_EXHAUSTED. A client is a dukat-client-id metadata value (the "
        "Python client sends one per connect()), else a peer address. Default: 100",
        metavar="N",
        from_text=text_int,
        from_toml=toml_int,
    ),
    Option(
        field="retain_finished_jobs",
        flag="--retain-finished-jobs",
        env="DUKATD_RETAIN_FINISHED_JOBS",
        help="finished jobs kept in memory, oldest dropped first. Default: 1000",
        metavar="N",
        from_text=text_int,
        from_toml=toml_int,
    ),
    Option(
        field="finished_job_ttl",
        flag="--finished-job-ttl",
        env="DUKATD_FINISHED_JOB_TTL",
        help="how long a finished job is kept in memory at most. Default: 1h",
        metavar="DURATION",
        from_text=text_duration,
        from_toml=toml_duration,
    ),
    Option(
        field="worker_heartbeat_interval",
        flag="--worker-heartbeat-interval",
        env="DUKATD_WORKER_HEARTBEAT_INTERVAL",
        help="how often a worker sends an update on its Work stream, and the daemon a message to "
        "it, each an empty one when there is nothing else. Default: 10s",
        metavar="DURATION",
        from_text=text_duration,
        from_toml=toml_duration,
    ),
    Option(
        field="worker_heartbeat_timeout",
        flag="--worker-heartbeat-timeout",
        env="DUKATD_WORKER_HEARTBEAT_TIMEOUT",
        help="a worker silent this long loses its stream and its tasks (interrupted: they run "
        "again); a worker that hears nothing from the daemon this long says hello again. "
        "Longer than the interval. Default: 30s",
        metavar="DURATION",
        from_text=text_duration,
        from_toml=toml_duration,
    ),
    Option(
        field="keepalive_time",
        flag="--keepalive-time",
        env="DUKATD_KEEPALIVE_TIME",
        help="interval of the server's keepalive pings on an idle connection. Default: 30s",
        metavar="DURATION",
        from_text=text_duration,
        from_toml=toml_duration,
    ),
    Option(
        field="keepalive_timeout",
        flag="--keepalive-timeout",
        env="DUKATD_KEEPALIVE_TIMEOUT",
        help="wait for a keepalive ack before dropping the connection. Default: 10s",
        metavar="DURATION",
        from_text=text_duration,
        from_toml=toml_duration,
    ),
    Option(
        field="keepalive_min_client_interval",
        flag="--keepalive-min-client-interval",
        env="DUKATD_KEEPALIVE_MIN_CLIENT_INTERVAL",
        help="shortest interval between a client's pings the server tolerates (more often gets "
        "GOAWAY too_many_pings). Default: 10s",
        metavar="DURATION",
        from_text=text_duration,
        from_toml=toml_duration,
    ),
    Option(
        field="shutdown_grace",
        flag="--shutdown-grace",
        env="DUKATD_SHUTDOWN_GRACE",
        help="on SIGTERM, how long RPCs and running tasks may finish before they are cancelled; "
        "keep grace plus kill grace below the supervisor's stop timeout. Default: 5s",
        metavar="DURATION",
        from_text=text_duration,
        from_toml=toml_duration,
    ),
    Option(
        field="kill_grace",
        flag="--kill-grace",
        env="DUKATD_KILL_GRACE",
        help="after SIGTERM to a task's process group, the wait before SIGKILL. Default: 2s",
        metavar="DURATION",
        from_text=text_duration,
        from_toml=toml_duration,
    ),
    Option(
        field="log_level",
        flag="--log-level",
        env="DUKATD_LOG_LEVEL",
        help=f"log threshold, one of {', '.join(LOG_LEVELS)}. Default: INFO",
        metavar="LEVEL",
        from_text=str,
        from_toml=toml_str,
    ),
    Option(
        field="config_file",
        flag="--config",
        env="DUKATD_CONFIG",
        help="TOML file of options (keys named like the options with underscores); flags and "
        "DUKATD_* variables override it. Default: none",
        metavar="FILE.toml",
        from_text=path_text,
        from_toml=toml_str,
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
