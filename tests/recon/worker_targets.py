"""Functions that tests/recon/test_workers.py runs in spawned worker processes (importable by name)."""

from __future__ import annotations

import os
import time

from dejavu.errors import DejavuError


def take_units(claims, process: int, units: int, fail: str = "") -> list[int]:
    """Claim units of list "a" until none are left; process 1 fails on its first claim when ``fail`` says how."""
    got = []
    while (i := claims.claim("a")) < units:
        if process == 1 and fail == "error":
            raise DejavuError(f"unit {i}: broken input")
        if process == 1 and fail == "bug":
            raise ZeroDivisionError("a bug")
        if process == 1 and fail == "killed":
            os._exit(3)
        got.append(i)
        time.sleep(0.02)  # a unit's work: the others get to claim meanwhile
    return got
