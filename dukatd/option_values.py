"""How a value of a `dukatd` option is read: from text (a flag, a `DUKATD_*` variable) or as
TOML typed it, into a Python value; `BadValue` says what is wrong, the caller says where
(`dukatd.options` gives each option its readers).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Sequence

from dukat import convert
from dukat.core.breaker import CircuitBreakerConfig
from dukat.defaults import parse_duration
from dukat.errors import BadValue, ValidationError

__all__ = [
    "MIB",
    "did_you_mean",
    "path_text",
    "text_bool",
    "text_duration",
    "text_int",
    "text_listen",
    "text_metrics",
    "text_resources",
    "text_size",
    "toml_bool",
    "toml_breakers",
    "toml_duration",
    "toml_int",
    "toml_listen",
    "toml_metrics",
    "toml_resources",
    "toml_size",
    "toml_str",
]

MIB = 1024 * 1024


def text_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise BadValue(f"expected true or false (1/0, yes/no, on/off), not {text!r}")


def toml_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise BadValue(f"expected true or false, not {value!r}")
    return value


def text_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise BadValue(f"expected a whole number, not {text!r}") from None


def toml_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadValue(f"expected a whole number, not {value!r}")
    return value


_SIZE = re.compile(r"(\d+)\s*(B|KiB|MiB|GiB)?")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": MIB, "GiB": 1024 * MIB}


def text_size(text: str) -> int:
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise BadValue(
            f"expected a size in bytes, like 65536 or 64MiB (KiB, MiB, GiB), not {text!r}"
        )
    return int(match[1]) * _SIZE_UNITS[match[2]]


def toml_size(value: object) -> int:
    return text_size(value) if isinstance(value, str) else toml_int(value)


def text_duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise BadValue(str(error)) from None


def toml_duration(value: object) -> float:
    if isinstance(value, str):
        return text_duration(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadValue(f"expected seconds, like 30 or '30s', not {value!r}")
    return float(value)


def toml_str(value: object) -> str:
    if not isinstance(value, str):
        raise BadValue(f"expected a string, not {value!r}")
    return value


def text_listen(text: str) -> tuple[str, ...]:
    # One address per flag; the variable takes a comma-separated list.
    return tuple(part.strip() for part in text.split(",") if part.strip())


def toml_listen(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadValue(f"expected a list of addresses, like ['unix:/run/x.sock'], not {value!r}")
    return tuple(value)


def text_metrics(text: str) -> str | None:
    return None if text.strip().lower() == "off" else text


def toml_metrics(value: object) -> str | None:
    return text_metrics(toml_str(value))


def text_resources(text: str) -> dict[str, float]:
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


def toml_resources(value: object) -> dict[str, float]:
    if not isinstance(value, dict):
        raise BadValue(f"expected a table of NAME = CAPACITY, like {{ cpu = 4 }}, not {value!r}")
    for name, capacity in value.items():
        if isinstance(capacity, bool) or not isinstance(capacity, (int, float)):
            raise BadValue(f"capacity of {name!r} must be a number, not {capacity!r}")
    return dict(value)


def toml_breakers(value: object) -> dict[str, CircuitBreakerConfig]:
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


def path_text(text: str) -> str:
    return text  # made absolute by Config


def did_you_mean(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
