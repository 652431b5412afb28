"""Checks of numeric command-line values shared by the subcommands (one-line errors naming the flag)."""

from __future__ import annotations

import math

from dejavu.errors import DejavuError


def check_positive(flag: str, value: float | None, what: str = "a positive number") -> None:
    """Refuse a value given for ``flag`` (e.g. "--fps") that is not finite and above 0; None (not given) passes."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value) or value <= 0:
        raise DejavuError(f"{flag} {value}: expected {what}")
