"""MediaPipe on one photo in a child process, started before the parent imports torch.

Importing torch costs ~1.5-2 s and importing MediaPipe ~0.8 s on the 2-core CPU, one after the
other in one process. ``dejavu reconstruct`` starts this child first: it imports only MediaPipe and
OpenCV, finds the landmarks, aligns the crop exactly as the tracker does and segments it, while the
parent imports torch and loads the network on the other core. The tracker then takes the child's
landmarks and person mask instead of running MediaPipe itself. Any failure of the child (crash,
timeout, other input) makes the tracker do the work as usual: the child can only save time.

Child command line (internal): ``python -m dejavu.track.prefetch IMAGE CROP_SIZE OUT.npz``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dejavu.track import align
from dejavu.track.landmarks import LandmarkDetector
from dejavu.track.segment import PersonSegmenter
from dejavu.track.video import iter_frames

log = logging.getLogger(__name__)

#: How long the tracker waits for the child before doing the work itself (seconds).
WAIT_S = 60.0


@dataclass
class Prefetched:
    """The child's result for one image.

    points: (478, 2) landmarks in image pixels, or None when no face was found.
    size: face size in pixels. n_faces: faces found. person: (C, C) float32 person probability of the
    aligned crop of side C = crop_size.
    """

    points: np.ndarray | None
    size: float
    n_faces: int
    person: np.ndarray | None
    crop_size: int


class MediaPipePrefetch:
    """Start the child for ``image``; :meth:`take` collects its result (or None).

    Example:
        >>> pre = MediaPipePrefetch("photo.jpg")   # doctest: +SKIP
        >>> import torch                            # meanwhile, on the other core
        >>> track("photo.jpg", "out", prefetch=pre)
    """

    def __init__(self, image: str | Path, crop_size: int = 512):
        self.image = Path(image).resolve()
        self.crop_size = int(crop_size)
        fd, name = tempfile.mkstemp(prefix="dejavu-prefetch-", suffix=".npz")
        os.close(fd)
        self._out = Path(name)
        self._proc: subprocess.Popen | None = None
        if not self.image.is_file():
            return  # the tracker reports the missing file itself
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "dejavu.track.prefetch", str(self.image), str(self.crop_size), str(self._out)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError as exc:  # pragma: no cover - no fork/exec available
            log.debug("prefetch: could not start the child (%s)", exc)

    def take(self, image: Path, crop_size: int) -> Prefetched | None:
        """The child's result if it was made for this ``image`` and ``crop_size``, else None."""
        proc, self._proc = self._proc, None
        try:
            if proc is None or Path(image).resolve() != self.image or int(crop_size) != self.crop_size:
                if proc is not None:
                    proc.kill()
                return None
            try:
                rc = proc.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                log.debug("prefetch: the child took over %.0f s; tracking without it", WAIT_S)
                return None
            if rc != 0:
                log.debug("prefetch: the child exited with %d; tracking without it", rc)
                return None
            with np.load(self._out) as z:
                if not bool(z["found"]):
                    return Prefetched(None, 0.0, 0, None, self.crop_size)
                return Prefetched(z["points"].astype(np.float32), float(z["size"]), int(z["n_faces"]),
                                  z["person"].astype(np.float32), self.crop_size)
        except Exception as exc:  # noqa: BLE001 - the child is an optimisation; never fail because of it
            log.debug("prefetch: unusable result (%s); tracking without it", exc)
            return None
        finally:
            self._out.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop the child if nobody took its result."""
        if self._proc is not None:
            self._proc.kill()
            self._proc = None
        self._out.unlink(missing_ok=True)


def _child(image: str, crop_size: int, out: str) -> None:
    import types

    # mediapipe.solutions imports matplotlib.pyplot (0.7 s) for plotting helpers this process never
    # calls; this short-lived process gets an empty stand-in. Never done in a user's process.
    for name in ("matplotlib", "matplotlib.pyplot"):
        sys.modules.setdefault(name, types.ModuleType(name))

    frame = next(iter(iter_frames(Path(image), None, None)))
    with LandmarkDetector(video=False) as detector:
        det = detector(frame.image)
    if det is None:
        result = {"found": False}
    else:
        affine = align.params_to_affine(align.crop_params(det.points[None]), crop_size)
        crop = align.warp(frame.image, affine[0], crop_size)
        seg = PersonSegmenter()
        try:
            person = seg(crop)
        finally:
            seg.close()
        result = {"found": True, "points": det.points, "size": det.size, "n_faces": det.n_faces,
                  "person": person.astype(np.float32)}
    tmp = out + ".part.npz"
    np.savez(tmp, **result)
    os.replace(tmp, out)


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), sys.argv[3])
