"""MediaPipe face-mesh landmarks: 478 points (468 mesh + 10 iris) in image pixels.

Uses the legacy ``mediapipe.solutions.face_mesh`` API of mediapipe 0.10.21 (models ship in the
wheel). Videos use its tracking mode (the face detector runs only when tracking is lost). When
several faces are found the largest is kept (and logged once). Small faces that the short-range
detector misses on the full frame (e.g. a distant face in 1080p) are searched for again on
overlapping tiles, then followed from a box around the previous frame's landmarks.

Coordinates: (x right, y down) in pixels of the input image; pixel (row i, col j) centre at
(j + 0.5, i + 0.5), as everywhere in the project.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from dejavu.errors import DejavuError
from dejavu.track.native_log import native_stderr_silenced, started_quietly

log = logging.getLogger(__name__)

N_LANDMARKS = 478
#: A face whose landmark box is smaller than this (pixels, longer side) is called tiny.
TINY_FACE_PX = 64

# MediaPipe indices used by the aligner and the fitter.
LEFT_EYE = [33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173]  # image-left eye
RIGHT_EYE = [263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398]
MOUTH_CORNERS = [61, 291]
#: The face oval, in order around the face (MediaPipe's FACEMESH_FACE_OVAL as a loop, from the forehead).
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
#: Points that move little with expressions: eye corners, nose bridge and base, temples, cheeks.
STABLE = [33, 133, 362, 263, 6, 168, 197, 195, 5, 4, 1, 98, 327, 234, 454, 127, 356, 10, 151]


@dataclass
class Detection:
    points: np.ndarray  # (478, 2) float32 pixels (x, y)
    depth: np.ndarray  # (478,) float32 MediaPipe relative z (pixels, smaller = closer)
    n_faces: int  # faces seen in the image (the largest is kept)

    @property
    def size(self) -> float:
        """Longer side of the landmark bounding box, pixels."""
        span = self.points.max(0) - self.points.min(0)
        return float(span.max())


def _box_area(points: np.ndarray) -> float:
    span = points.max(0) - points.min(0)
    return float(span[0] * span[1])


class LandmarkDetector:
    """Detect 478 landmarks per image; stateful in video mode (tracking between frames).

    Example:
        >>> with LandmarkDetector(video=False) as det:  # doctest: +SKIP
        ...     d = det(image_uint8)  # Detection or None
    """

    def __init__(self, video: bool = False, max_faces: int = 4, min_confidence: float = 0.5):
        try:
            import mediapipe as mp
        except ImportError as exc:  # pragma: no cover - a broken install
            raise DejavuError(f"mediapipe is not importable ({exc}); install mediapipe==0.10.21") from None
        self._mp = mp
        self.video = video
        self.max_faces = max_faces
        self.min_confidence = min_confidence
        self._mesh = self._make(static=not video)
        self._static = None  # created lazily for the small-face fallback (video mode)
        self._prev_box: np.ndarray | None = None  # (x0, y0, x1, y1) of the previous face, pixels
        self._warned_many = False
        self._loud = set()  # ids of meshes that found a face (their last start-up line is then said)

    def _make(self, static: bool):
        return started_quietly(lambda: self._mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static, max_num_faces=self.max_faces, refine_landmarks=True,
            min_detection_confidence=self.min_confidence, min_tracking_confidence=self.min_confidence))

    def close(self) -> None:
        for mesh in {id(m): m for m in (self._mesh, self._static) if m is not None}.values():
            mesh.close()
        self._mesh = self._static = None

    def __enter__(self) -> "LandmarkDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def reset(self) -> None:
        """Forget the previous input, so the next image is treated as a new detector would treat it: the
        previous face's box (which guides the small-face search) and, in video mode, the face the mesh is
        following, whose graph is rebuilt. The static mesh keeps nothing between images and is kept."""
        self._prev_box = None
        self._warned_many = False
        if self.video and self._mesh is not None:
            self._loud.discard(id(self._mesh))
            self._mesh.close()
            self._mesh = self._make(static=False)

    # -- detection -------------------------------------------------------------------------------
    def _run(self, mesh, image: np.ndarray, offset=(0.0, 0.0), scale: float = 1.0) -> list[Detection]:
        h, w = image.shape[:2]
        if id(mesh) in self._loud:
            res = mesh.process(np.ascontiguousarray(image))
        else:  # MediaPipe says one more start-up line on the first face it finds
            with native_stderr_silenced():
                res = mesh.process(np.ascontiguousarray(image))
            if res.multi_face_landmarks:
                self._loud.add(id(mesh))
        out = []
        for face in res.multi_face_landmarks or []:
            arr = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float32)
            pts = arr[:, :2] * np.array([w, h], dtype=np.float32) / scale + np.array(offset, dtype=np.float32)
            out.append(Detection(pts, arr[:, 2] * w / scale, 0))
        return out

    def _static_mesh(self):
        if self._static is None:
            self._static = self._make(static=True) if self.video else self._mesh
        return self._static

    def _search_box(self, image: np.ndarray, box: np.ndarray) -> list[Detection]:
        """Run the static detector on a square crop around ``box`` (x0, y0, x1, y1), upscaled if small."""
        import cv2

        h, w = image.shape[:2]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = max(box[2] - box[0], box[3] - box[1]) * 2.2
        x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        x1, y1 = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return []
        crop = image[y0:y1, x0:x1]
        scale = 1.0
        if max(crop.shape[:2]) < 256:
            scale = 256 / max(crop.shape[:2])
            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        return self._run(self._static_mesh(), crop, offset=(x0, y0), scale=scale)

    def _search_tiles(self, image: np.ndarray) -> list[Detection]:
        """Overlapping square tiles (half the short side, 50% overlap) for faces too small for the full frame."""
        h, w = image.shape[:2]
        tile = max(128, min(h, w) // 2)
        found: list[Detection] = []
        for y0 in range(0, max(1, h - tile // 2), tile // 2):
            for x0 in range(0, max(1, w - tile // 2), tile // 2):
                crop = image[y0:y0 + tile, x0:x0 + tile]
                found += self._run(self._static_mesh(), crop, offset=(x0, y0))
                if found:
                    return found
        return found

    def __call__(self, image: np.ndarray) -> Detection | None:
        """Landmarks of the largest face in ``image`` ((H, W, 3) uint8 RGB), or None."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError("LandmarkDetector expects (H, W, 3) uint8 RGB images")
        faces = self._run(self._mesh, image)
        if not faces and self._prev_box is not None:
            faces = self._search_box(image, self._prev_box)
        if not faces and min(image.shape[:2]) >= 512:
            faces = self._search_tiles(image)
            if faces:  # refine on a crop around the tile hit (full landmark-model resolution)
                faces = self._search_box(image, _bbox(faces[0].points)) or faces
        if not faces:
            self._prev_box = None
            return None
        best = max(faces, key=lambda d: _box_area(d.points))
        if len(faces) > 1 and not self._warned_many:
            log.info("%d faces found; tracking the largest", len(faces))
            self._warned_many = True
        best.n_faces = len(faces)
        self._prev_box = _bbox(best.points)
        return best


def _bbox(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points.min(0), points.max(0)]).astype(np.float32)
