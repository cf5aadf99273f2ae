"""The daemon's options: one frozen `Config`, read from flags, environment and a TOML file.

Precedence, highest first: command-line flags, `DUKATD_*` environment variables, the TOML file
named by `--config` (or `DUKATD_CONFIG`), built-in defaults. Each option is taken whole from the
highest source that sets it: `--listen` on the command line replaces the environment's list and
the file's, it does not add to them.

Every value is checked in one place, `Config.__post_init__`, and a bad one raises `ConfigError`
naming where it came from: `--max-concurrency`, `DUKATD_MAX_CONCURRENCY`, or
`max_concurrency in /etc/dukatd/dukatd.toml`. Unknown TOML keys and unknown `DUKATD_*`
variables are errors too: a typo that is silently ignored runs the daemon on a default nobody
chose.

`python -m dukatd --help` lists every option with its variable and default; in the TOML file
each option is a top-level key named like the `Config` field (`max_concurrency = 64`,
`listen = ["unix:/run/dukatd/dukatd.sock"]`, `[resources]` with `cpu = 4`), plus
`[breakers.NAME]` tables with the fields of `dukat.core.breaker.CircuitBreakerConfig`.

This module reads the flags and the variables and applies the precedence; `Config`, its
defaults and its checks are `dukatd.config_values`', reading the TOML file is
`dukatd.config_file`'s, and every name is found here too.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import dukat
from dukat.errors import ConfigError
from dukatd.config_file import read_toml
from dukatd.config_values import (
    Config,
    default_listen,
    default_max_concurrency,
    default_state_dir,
)
from dukatd.options import BY_ENV, BY_FIELD, EPILOG, OPTIONS, BadValue, Option, did_you_mean

__all__ = [
    "Config",
    "ConfigError",
    "build_parser",
    "default_listen",
    "default_max_concurrency",
    "default_state_dir",
    "parse_args",
]


# -- the command line, the environment, the file ---------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # Every problem with the command line is a ConfigError, like one in a variable or the
        # file; the entry point decides how to print it and exits 2.
        raise ConfigError(message, option="argv", source="command line")


def build_parser() -> argparse.ArgumentParser:
    """The command line of `dukatd`; its --help documents every flag and its variable.

    Flags left out are absent from the parsed namespace (not None), so that a flag given
    is told apart from a default. `parse_args` is what turns the namespace into a Config.
    """
    parser = _Parser(
        prog="dukatd",
        description="dukatd: the dukat sidecar daemon. Runs DAGs of tasks for clients in any "
        "language over gRPC.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        # Abbreviations (--max for --max-concurrency) would break when a flag is added.
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"dukatd {dukat.__version__}")
    for option in OPTIONS:
        if option.flag is None:
            continue
        help_text = f"{option.help} [env: {option.env}]"
        if option.metavar is None:
            parser.add_argument(
                option.flag,
                dest=option.field,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            parser.add_argument(
                option.flag,
                dest=option.field,
                action="append" if option.repeatable else "store",
                metavar=option.metavar,
                default=argparse.SUPPRESS,
                help=help_text,
            )
    return parser


def parse_args(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Build the Config from flags, `DUKATD_*` variables, the TOML file and the defaults.

    Raises `ConfigError` naming the flag, variable or TOML key at fault. `--help` prints the
    help and exits, as argparse does.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    environ = os.environ if environ is None else environ
    flags = vars(build_parser().parse_args(argv))
    env = _from_environment(environ)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    config_file = flags.get("config_file")
    if config_file is not None:
        sources["config_file"] = "--config"
    elif "config_file" in env:
        config_file = env["config_file"]
        sources["config_file"] = "DUKATD_CONFIG"
    if config_file is not None:
        values["config_file"] = config_file
        for key, value in read_toml(Path(config_file), sources["config_file"]).items():
            values[key] = value
            sources[key] = f"{key} in {config_file}"

    for name, value in env.items():
        values[name] = value
        sources[name] = BY_FIELD[name].env or name
    for name, given in flags.items():
        option = BY_FIELD[name]
        assert option.flag is not None
        values[name] = _flag_value(option, given)
        sources[name] = option.flag

    values.setdefault("listen", default_listen(environ))
    values.setdefault("state_dir", default_state_dir(environ))
    return Config(**values, sources=sources)


def _flag_value(option: Option, given: Any) -> Any:
    try:
        if option.metavar is None:
            return given  # BooleanOptionalAction gave a bool already
        # A repeated flag reads as the variable's comma-separated list of all it was given.
        return option.from_text(",".join(given) if option.repeatable else given)
    except BadValue as error:
        raise ConfigError(str(error), option=option.field, source=option.flag) from None


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, text in environ.items():
        if not name.startswith("DUKATD_"):
            continue
        option = BY_ENV.get(name)
        if option is None:
            raise ConfigError(
                f"unknown variable{did_you_mean(name, list(BY_ENV))} (dukatd --help lists "
                "the DUKATD_* variables)",
                option="environment",
                source=name,
            )
        if not text.strip():
            continue  # set but empty, as `Environment=DUKATD_X=` leaves it: not given
        try:
            values[option.field] = option.from_text(text)
        except BadValue as error:
            raise ConfigError(str(error), option=option.field, source=name) from None
    return values
