"""MediaPipe selfie segmentation (torch-free, so the prefetch child can use it)."""

from __future__ import annotations

import numpy as np

from dejavu.track.native_log import started_quietly


class PersonSegmenter:
    """MediaPipe selfie segmentation: (H, W, 3) uint8 -> (H, W) float32 person probability."""

    def __init__(self):
        import mediapipe as mp

        self._seg = started_quietly(lambda: mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        res = self._seg.process(np.ascontiguousarray(image))
        return np.asarray(res.segmentation_mask, dtype=np.float32)

    def close(self) -> None:
        self._seg.close()
