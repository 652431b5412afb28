"""Per-frame driving parameters of a head model (:class:`HeadParams`): the one container for them.

Every stage that holds "what the head does in each frame" holds a :class:`HeadParams`: the tracker's
fit (:class:`dejavu.track.fit.FitResult`), the frames a personalization trains on
(:class:`dejavu.personalize.frames.FrameSet`) and a driving sequence (:class:`dejavu.drive.sequence.Drive`).
The person (identity shape, vertex offsets) and the camera are not driving parameters: they stay with
their owners. The tracker's on-disk record (:class:`dejavu.track.result.TrackResult`) keeps numpy arrays
(it is read by torch-free processes) and gives its parameters as one with :meth:`TrackResult.head_params`.

Letters: T frames, Ne expression components of the head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dejavu.errors import DejavuError

#: Columns of the joint parameters: jaw axis-angle (3), left then right eyeball axis-angle (6).
JAW_DIM, EYES_DIM = 3, 6


@dataclass(frozen=True)
class HeadParams:
    """Driving parameters of T frames, float32 tensors on one device.

    expression: (T, Ne) in the head's units (PCA coefficients or 0..1 activations);
    jaw: (T, 3) axis-angle, radians, head frame; eyes: (T, 6) left then right eyeball axis-angle, radians.
    """

    expression: torch.Tensor
    jaw: torch.Tensor
    eyes: torch.Tensor

    def __post_init__(self):
        T = self.expression.shape[0] if self.expression.ndim == 2 else -1
        if (T < 0 or self.jaw.shape != (T, JAW_DIM) or self.eyes.shape != (T, EYES_DIM)):
            raise DejavuError(f"head parameters: expression {tuple(self.expression.shape)}, jaw {tuple(self.jaw.shape)}, "
                              f"eyes {tuple(self.eyes.shape)}; expected (T, Ne), (T, {JAW_DIM}), (T, {EYES_DIM})")

    @classmethod
    def of(cls, expression, jaw=None, eyes=None, device: torch.device | str = "cpu") -> "HeadParams":
        """From arrays or tensors (float32 on ``device``); a missing jaw or eyes is zero (rest pose)."""
        def t(a, cols):
            if a is None:
                return torch.zeros(len(expr), cols, device=device)
            return torch.as_tensor(np.ascontiguousarray(a, np.float32) if isinstance(a, np.ndarray) else a,
                                   dtype=torch.float32, device=device)
        expr = t(expression, 0)
        return cls(expr, t(jaw, JAW_DIM), t(eyes, EYES_DIM))

    @classmethod
    def zeros(cls, T: int, n_expr: int, device: torch.device | str = "cpu") -> "HeadParams":
        """T frames of the neutral face (zero expression, closed jaw, eyes ahead)."""
        return cls(torch.zeros(T, n_expr, device=device), torch.zeros(T, JAW_DIM, device=device),
                   torch.zeros(T, EYES_DIM, device=device))

    @staticmethod
    def cat(parts: list["HeadParams"]) -> "HeadParams":
        """Frames of ``parts`` one after another."""
        return HeadParams(*(torch.cat([getattr(p, n) for p in parts]) for n in ("expression", "jaw", "eyes")))

    def __len__(self) -> int:
        return self.expression.shape[0]

    def __getitem__(self, idx: int | slice | torch.Tensor | list[int]) -> "HeadParams":
        """The frames at ``idx`` (an int keeps its frame axis: one frame)."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1 if idx != -1 else None)
        return HeadParams(self.expression[idx], self.jaw[idx], self.eyes[idx])

    @property
    def n_expr(self) -> int:
        return self.expression.shape[1]

    def to(self, device: torch.device | str) -> "HeadParams":
        return HeadParams(self.expression.to(device), self.jaw.to(device), self.eyes.to(device))

    def detach(self) -> "HeadParams":
        return HeadParams(self.expression.detach().clone(), self.jaw.detach().clone(), self.eyes.detach().clone())

    def kwargs(self) -> dict[str, torch.Tensor]:
        """``{expression, jaw, eyes}``: keyword arguments of a head model or an avatar model."""
        return {"expression": self.expression, "jaw": self.jaw, "eyes": self.eyes}

    def numpy(self) -> dict[str, np.ndarray]:
        """``{expression, jaw, eyes}`` as float32 numpy arrays (CPU copies)."""
        return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in self.kwargs().items()}
