"""MediaPipe graphs kept across tracking runs: a process that tracks many inputs builds each graph once.

Building a face mesh and a selfie segmenter costs ~40 ms of CPU per input and starts their threads; a
``dejavu prepare recon`` worker tracks hundreds of person folders. :class:`MediaPipeGraphs` holds one
:class:`~dejavu.track.landmarks.LandmarkDetector` per mode (photos, video) and one
:class:`~dejavu.track.segment.PersonSegmenter`, built on first use; :func:`dejavu.track.track` takes it
as ``graphs``. Results are those of graphs built afresh: the photo-mode face mesh and the segmenter keep
nothing between images, and a detector handed out again is reset (its previous-face box forgotten, a
video-mode mesh, which follows the face from frame to frame, rebuilt).

Example:
    >>> with MediaPipeGraphs() as graphs:  # doctest: +SKIP
    ...     for folder in people:
    ...         track(folder, out / folder.name, graphs=graphs)
"""

from __future__ import annotations

from dejavu.track.landmarks import LandmarkDetector
from dejavu.track.segment import PersonSegmenter


class MediaPipeGraphs:
    """A landmark detector per mode and a person segmenter, built on first use and reused."""

    def __init__(self):
        self._detectors: dict[bool, LandmarkDetector] = {}
        self._segmenter: PersonSegmenter | None = None

    def detector(self, video: bool) -> LandmarkDetector:
        """The detector for a new input (``video``: tracking mode), reset if it was used before."""
        det = self._detectors.get(video)
        if det is None:
            det = self._detectors[video] = LandmarkDetector(video=video)
        else:
            det.reset()
        return det

    def segmenter(self) -> PersonSegmenter:
        if self._segmenter is None:
            self._segmenter = PersonSegmenter()
        return self._segmenter

    def close(self) -> None:
        for det in self._detectors.values():
            det.close()
        if self._segmenter is not None:
            self._segmenter.close()
        self._detectors, self._segmenter = {}, None

    def __enter__(self) -> "MediaPipeGraphs":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
