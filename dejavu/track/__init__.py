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

from dejavu.track.pipeline import cache_key, track
from dejavu.track.result import TrackResult, is_tracking_dir, load_tracking

__all__ = ["track", "load_tracking", "is_tracking_dir", "TrackResult", "cache_key"]
