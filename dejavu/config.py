"""Config plumbing shared by every stage: dataclass presets overridden from dicts (JSON files, CLI)."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from dejavu.errors import DejavuError

T = TypeVar("T")


def apply_overrides(obj: T, overrides: dict[str, Any], where: str = "config") -> T:
    """A copy of dataclass ``obj`` with ``overrides`` applied; nested dataclasses take nested dicts.

    Unknown keys are errors naming ``where`` (a file or argument) and the keys it accepts.
    """
    names = {f.name for f in dataclasses.fields(obj)}
    changes = {}
    for key, value in overrides.items():
        if key not in names:
            raise DejavuError(f"{where}: unknown config key {key!r}; expected one of {sorted(names)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise DejavuError(f"{where}: {key!r} must be an object")
            value = apply_overrides(current, value, f"{where}.{key}")
        elif isinstance(current, tuple):
            value = tuple(value)
        changes[key] = value
    return dataclasses.replace(obj, **changes)
