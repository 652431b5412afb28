"""Face tracking: photos and videos -> head-model parameters, camera, aligned crops and masks.

:func:`~dejavu.track.pipeline.track` (in :mod:`.pipeline`) runs it: decode (:mod:`.video`) -> MediaPipe 478
landmarks (:mod:`.landmarks`) -> FFHQ-style alignment, scale 1.2 (:mod:`.align`) -> batched landmark fit of
camera, shared identity and per-frame expression/jaw/eyes (:mod:`.fit`) -> crops, head and face masks
(:mod:`.masks`) -> ``tracking.npz`` + ``summary.json`` + overlay (:mod:`.result`, :mod:`.overlay`). Output
format and heuristics: docs/TRACKING.md. The package exports the driver and the result type.

Example:
    >>> from dejavu.track import track, load_tracking  # doctest: +SKIP
    >>> res = track("talk.mp4", "out/talk", head="builtin", max_frames=100)
    >>> res.expression.shape, res.world_to_cam.shape   # (B, Ne), (B, 4, 4)
"""

from __future__ import annotations

import importlib

# The names load on first use, not here: the MediaPipe child of dejavu.track.prefetch imports .landmarks,
# .segment, .align and .video, and Python runs this file first; importing .pipeline here would load torch
# and numba into that child (2.6 s on a 2-core CPU), the very cost it exists to overlap.
_EXPORTS = {"track": "pipeline", "cache_key": "pipeline", "load_tracking": "result", "is_tracking_dir": "result",
            "TrackResult": "result"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"dejavu.track.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'dejavu.track' has no attribute {name!r}")
