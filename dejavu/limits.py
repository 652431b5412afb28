"""Sizes a run can afford, checked before it allocates: a run that cannot fit says so in one line, with
the largest size that would, instead of growing until the kernel kills it (or another process).

Each stage estimates its own need (e.g. :meth:`dejavu.personalize.config.PersonalizeConfig.memory_bytes`)
and calls :func:`check_memory`; :func:`largest_fitting` finds the size to suggest.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

from dejavu.errors import DejavuError

#: Share of the available memory a run may plan to use (the estimates are rough; the rest is headroom).
USABLE_SHARE = 0.85
#: UV map sides that make an avatar: below 8 texels a head is a few dozen blurry Gaussians (7 gave 39);
#: above 2048 the maps alone outgrow any machine here (13 channels x S^2 per map, several maps).
UV_SIZE_RANGE = (8, 2048)
#: Peak bytes per texel of a UV map while an avatar is made (offset maps, texel tables, Gaussians, their
#: renders): `dejavu reconstruct` peaked 722 MB higher at --uv-size 1024 than at 256 (~735 B a texel;
#: docs/experiments/2026-12-07-hardening.md), taken with 40% room.
UV_BYTES_PER_TEXEL = 1024


def check_uv_size(size: int, what: str = "--uv-size") -> int:
    """``size`` if it is a UV side in :data:`UV_SIZE_RANGE` whose maps fit in memory; else DejavuError."""
    lo, hi = UV_SIZE_RANGE
    if not lo <= size <= hi:
        raise DejavuError(f"{what} {size}: expected a side between {lo} and {hi} texels")

    def need(side: int) -> int:
        return side * side * UV_BYTES_PER_TEXEL

    def advice(budget: int) -> str:
        fits = largest_fitting(need, budget, lo, hi)
        return f"at most {what} {fits} fits" if fits else "not even the smallest UV map fits"

    check_memory(need(size), f"{what} {size}", advice)
    return size


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(need_bytes: int, what: str, advice: Callable[[int], str] | str = "",
                 available: int | None = None) -> None:
    """Refuse (DejavuError) when ``need_bytes`` exceeds :data:`USABLE_SHARE` of the available memory.

    Args:
        need_bytes: the run's estimate. what: the setting(s) responsible, e.g. "--resolution 4096".
        advice: text, or ``budget_bytes -> text`` naming what would fit, appended after a semicolon.
        available: bytes available (default :func:`available_memory`; unknown = no check).
    """
    available = available_memory() if available is None else available
    if available is None:
        return
    budget = int(available * USABLE_SHARE)
    if need_bytes > budget:
        text = advice(budget) if callable(advice) else advice
        raise DejavuError(f"{what}: needs about {format_bytes(need_bytes)} of memory, {format_bytes(available)} "
                          f"available" + (f"; {text}" if text else ""))


def largest_fitting(need: Callable[[int], int], budget: int, lo: int, hi: int, step: int = 1) -> int | None:
    """Largest multiple of ``step`` in [lo, hi] whose ``need(value)`` fits ``budget`` (need grows with the
    value), or None when not even ``lo`` does."""
    lo, hi = math.ceil(lo / step) * step, (hi // step) * step
    if lo > hi or need(lo) > budget:
        return None
    while lo < hi:
        mid = ((lo + hi + step) // (2 * step)) * step
        if mid <= lo:
            mid = lo + step
        if need(mid) <= budget:
            lo = mid
        else:
            hi = mid - step
    return lo


def format_bytes(n: float) -> str:
    """``1.5 GB``, ``300 MB``."""
    return f"{n / (1 << 30):.1f} GB" if n >= (1 << 30) else f"{n / (1 << 20):.0f} MB"
