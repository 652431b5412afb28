"""Choosing the torch device from ``--device`` (never a literal ``"cuda:0"`` elsewhere)."""

from __future__ import annotations

import torch

from dejavu.errors import DejavuError


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda" | "cuda:N"`` into a torch device.

    ``"auto"`` picks CUDA when present, else CPU. Asking for CUDA without one is an error, not a
    silent fallback.
    """
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DejavuError(f"--device {name}: a CUDA GPU was asked for but none is available; use --device cpu")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise DejavuError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")
