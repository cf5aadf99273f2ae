"""The daemon's TOML file (`--config`): each top-level key an option, named like its `Config`
field, read into the values the file gives."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from dukat.errors import BadValue, ConfigError
from dukatd.options import BY_FIELD, TOML_KEYS, did_you_mean

__all__ = ["read_toml"]


def read_toml(path: Path, named_by: str) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise ConfigError(
            f"cannot read {str(path)!r}: {error.strerror or error}",
            option="config_file",
            source=named_by,
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(
            f"{str(path)!r} is not valid TOML: {error}", option="config_file", source=named_by
        ) from None
    values: dict[str, Any] = {}
    for key, value in document.items():
        if key not in TOML_KEYS:
            raise ConfigError(
                f"unknown key{did_you_mean(key, TOML_KEYS)} (dukatd --help lists the options)",
                option="config_file",
                source=f"{key} in {path}",
            )
        try:
            values[key] = BY_FIELD[key].from_toml(value)
        except BadValue as error:
            raise ConfigError(str(error), option=key, source=f"{key} in {path}") from None
    return values
