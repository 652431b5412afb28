"""Frames to personalize on: targets, per-frame head parameters and cameras at the render resolution.

:class:`FrameSet` holds T frames in memory (images as uint8 to keep 400 frames at 256^2 under
100 MB) and hands out float batches on a device. :func:`frames_from_tracking` builds one from a
``dejavu.track`` result; :func:`feature_masks` draws the facial-feature mask (brows, eyes, nose,
lips) from the fitted head's projected MediaPipe landmarks, so it is exact for synthetic data too.

Letters: T frames, B batch, R render side (pixels), Ne expression components, L = 478 landmarks.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F

from dejavu.errors import DejavuError
from dejavu.head.base import HeadModel, identity_kwargs
from dejavu.head.params import HeadParams
from dejavu.render.camera import project_points, world_to_cam_yaw
from dejavu.track.result import TrackResult

#: MediaPipe face-mesh landmark polygons of the facial features (stage-2 mask, paper section 3.4).
FEATURE_POLYGONS: dict[str, tuple[int, ...]] = {
    "brow_left": (70, 63, 105, 66, 107, 55, 65, 52, 53, 46),
    "brow_right": (300, 293, 334, 296, 336, 285, 295, 282, 283, 276),
    "eye_left": (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7),
    "eye_right": (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249),
    "lips": (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146),
}
#: Nose: the convex hull of these points (bridge, tip, wings, base).
NOSE_POINTS: tuple[int, ...] = (168, 6, 197, 195, 5, 4, 1, 2, 98, 97, 326, 327, 129, 358, 49, 279, 64, 294, 48, 278)


@dataclass
class FrameSet:
    """T frames at render side R.

    images: (T, R, R, 3) uint8 targets (background, clothes and neck white).
    masks: (T, R, R, 1) uint8 head masks (255 = head) or None.
    face_masks: (T, R, R, 1) uint8 face-region masks or None (metrics only).
    seen: (T, R, R, 1) uint8, 255 where the target is known (the crop lies inside its source frame, or the
        head mask leaves the pixel out by geometry: :meth:`dejavu.track.TrackResult.known`), or None (all is):
        elsewhere the crop repeats the frame's border, so losses and metrics take no error there.
    params: the frames' driving parameters (:class:`~dejavu.head.params.HeadParams`: expression (T, Ne),
        jaw (T, 3) and eyes (T, 6) radians).
    world_to_cam: (T, 4, 4) OpenCV; K: (T, 3, 3) pixels at side R.
    shape: (Ns,) identity shared by all frames; vertex_offsets: (V, 3) metres or None, shared too.
    index: (T,) frame numbers in the source.
    """

    images: torch.Tensor
    params: HeadParams
    world_to_cam: torch.Tensor
    K: torch.Tensor
    shape: torch.Tensor
    masks: torch.Tensor | None = None
    face_masks: torch.Tensor | None = None
    feature: torch.Tensor | None = None  # (T, R, R, 1) uint8 facial-feature mask, set by add_feature_masks
    seen: torch.Tensor | None = None
    index: torch.Tensor | None = None
    vertex_offsets: torch.Tensor | None = None

    SHARED = ("shape", "vertex_offsets")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def resolution(self) -> int:
        return self.images.shape[1]

    def subset(self, idx: torch.Tensor | slice | list[int]) -> "FrameSet":
        """The frames at ``idx`` (the identity stays shared)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value if value is None or f.name in self.SHARED else value[idx]
        return replace(self, **out)

    def split(self, train_fraction: float, holdout: str = "last", margin: int = 0) -> tuple["FrameSet", "FrameSet"]:
        """(training frames, held-out frames) by :func:`holdout_split` of the frames' cameras."""
        train, held = holdout_split(self.world_to_cam, train_fraction, holdout, margin)
        return self.subset(train), self.subset(held)

    def identity(self, device: torch.device | str = "cpu") -> dict[str, torch.Tensor | None]:
        """Head-model keyword arguments of the person: shape (Ns,), vertex_offsets (V, 3) or None."""

        return identity_kwargs(self.shape, self.vertex_offsets, device)

    def pixels(self, name: str) -> torch.Tensor | None:
        """Every frame's ``images``, ``masks``, ``face_masks``, ``feature`` or ``seen`` as float (T, C, R, R)
        in [0, 1] (None where the field is)."""
        return _as_float(getattr(self, name))

    def batch(self, idx: torch.Tensor, device: torch.device | str) -> dict[str, torch.Tensor | None]:
        """Float tensors for frames ``idx`` (B,) on ``device``: images (B, 3, R, R) in [0, 1], masks
        (B, 1, R, R) in {0, 1} (or None; also ``seen``), ``params`` (:class:`HeadParams`), cameras."""
        def img(t):
            return None if t is None else _as_float(t[idx].to(device))

        move = lambda t: None if t is None else t[idx].to(device)  # noqa: E731
        return {"images": img(self.images), "masks": img(self.masks), "face_masks": img(self.face_masks),
                "feature": img(self.feature), "seen": img(self.seen), "params": self.params[idx].to(device),
                "world_to_cam": move(self.world_to_cam), "K": move(self.K)}


#: The pixel fields of :meth:`FrameSet.batch`.
BATCH_PIXELS = ("images", "masks", "face_masks", "feature", "seen")


def downsample_batch(batch: dict[str, torch.Tensor | None], factor: int) -> dict[str, torch.Tensor | None]:
    """A :meth:`FrameSet.batch` at 1/``factor`` of its side: every pixel field (B, C, R, R) averaged over
    ``factor`` x ``factor`` blocks (masks become coverage in [0, 1]) and the intrinsics (B, 3, 3) scaled to
    match, so that a render at R / ``factor`` sees the same view. R must be divisible by ``factor``."""
    R = batch["images"].shape[-1]
    if R % factor:
        raise DejavuError(f"resolution {R} is not divisible by {factor}")
    out = dict(batch)
    for name in BATCH_PIXELS:
        if batch[name] is not None:
            out[name] = F.avg_pool2d(batch[name], factor)
    out["K"] = scale_intrinsics(batch["K"], R, R // factor)
    return out


#: Held-out protocols of :func:`holdout_split`.
HOLDOUTS = ("last", "yaw")


def holdout_split(world_to_cam: torch.Tensor, train_fraction: float, holdout: str = "last",
                  margin: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (in frame order) of the training and held-out frames of T frames with cameras (T, 4, 4).

    ``last`` (the paper's): the first ``train_fraction`` of the frames train, the rest is held out; the
    held-out frames are seen from the training camera. ``yaw``: the ``1 - train_fraction`` share of frames
    whose head yaw is farthest from the median yaw is held out, and the ``margin`` frames on either side
    of each held-out frame are kept out of training too (neighbouring frames show the same view); those
    are real images of angles the avatar never trained on. ``last`` takes no margin: it keeps the
    paper's split. At least one frame always trains.
    """

    if holdout not in HOLDOUTS:
        raise DejavuError(f"--holdout {holdout!r}: expected one of {', '.join(HOLDOUTS)}")
    T = world_to_cam.shape[0]
    n_train = min(T, max(1, int(round(T * train_fraction))))
    order = torch.arange(T)
    if holdout == "last" or n_train == T:
        return order[:n_train], order[n_train:]
    yaw = world_to_cam_yaw(world_to_cam.double())
    far = (yaw - yaw.median()).abs()
    held = torch.zeros(T, dtype=torch.bool)
    held[torch.argsort(far, descending=True, stable=True)[:T - n_train]] = True
    out = held.clone()  # held-out frames and their margins
    for shift in range(1, max(0, int(margin)) + 1):
        out[shift:] |= held[:-shift]
        out[:-shift] |= held[shift:]
    if bool(out.all()):  # the margins swallowed every frame: train on the least turned one
        least = torch.argmin(far.masked_fill(held, float("inf")))
        out[least] = False
    return order[~out], order[held]


def _as_float(t: torch.Tensor | None) -> torch.Tensor | None:
    """(T, R, R, C) uint8 -> (T, C, R, R) float in [0, 1]."""
    return None if t is None else t.permute(0, 3, 1, 2).float() / 255.0


def resize_images(images: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """(T, H, W, C) uint8 -> (T, size, size, C) uint8, antialiased (area-like) bilinear."""
    x = torch.as_tensor(np.asarray(images)).permute(0, 3, 1, 2).float()
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def scale_intrinsics(K: torch.Tensor, from_size: int, to_size: int) -> torch.Tensor:
    """Intrinsics (T, 3, 3) of a from_size crop -> the same view rendered at to_size (pixel centres kept)."""
    s = to_size / from_size
    K = K.clone().float()
    K[:, :2] = K[:, :2] * s
    return K


def feature_masks(landmarks_2d: np.ndarray, size: int) -> np.ndarray:
    """Facial-feature masks (T, size, size, 1) uint8 (255 inside) from landmarks (T, 478, 2) in pixels (x, y)."""
    from scipy.spatial import ConvexHull, QhullError
    from skimage.draw import polygon

    T = landmarks_2d.shape[0]
    out = np.zeros((T, size, size, 1), dtype=np.uint8)
    for t in range(T):  # setup only (not a training step): a few polygons per frame
        pts = landmarks_2d[t]
        polys = [pts[list(ids)] for ids in FEATURE_POLYGONS.values()]
        nose = pts[list(NOSE_POINTS)]
        try:
            polys.append(nose[ConvexHull(nose).vertices])
        except QhullError:  # degenerate (collinear) points: skip the nose for this frame
            pass
        for poly in polys:
            rr, cc = polygon(poly[:, 1] - 0.5, poly[:, 0] - 0.5, shape=(size, size))
            out[t, rr, cc, 0] = 255
    return out


@torch.no_grad()
def add_feature_masks(frames: FrameSet, head: HeadModel, chunk: int = 64) -> FrameSet:
    """Set ``frames.feature`` from the head's landmarks projected with each frame's camera."""

    pts = []
    for s in range(0, len(frames), chunk):
        sl = slice(s, s + chunk)
        device = head.v_template.device
        verts = head(**frames.identity(device), **frames.params[sl].to(device).kwargs())
        pts.append(project_points(head.landmarks(verts), frames.world_to_cam[sl], frames.K[sl]))
    lm = torch.cat(pts).cpu().numpy()
    return replace(frames, feature=torch.as_tensor(feature_masks(lm, frames.resolution)))


def frames_from_tracking(result: TrackResult, resolution: int, progress: bool = False, n_frames: int | None = None) -> FrameSet:
    """A :class:`FrameSet` at side ``resolution`` from a ``dejavu.track.TrackResult`` (its first ``n_frames``
    frames when given: only those crops are read).

    Targets are the aligned crops with everything outside the head mask set to white (paper: the
    ground truth has background, clothes and neck white), downsampled with antialiasing; intrinsics
    are rescaled from the crop size. ``seen`` marks the pixels whose whole footprint has a known target
    (:meth:`~dejavu.track.TrackResult.known`; None when every pixel of every frame does, or the tracking
    predates source sizes).
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    T, R = len(result) if n_frames is None else min(int(n_frames), len(result)), int(resolution)

    def load(i: int) -> tuple[np.ndarray, ...]:
        crop = result.load_crop(i)
        mask = result.load_mask(i).astype(np.float32)[..., None]
        face = result.load_mask(i, face=True).astype(np.float32)[..., None]
        known = result.known(i)
        seen = np.ones_like(mask) if known is None else known.astype(np.float32)[..., None]
        target = crop * mask + (1.0 - mask)
        stack = np.concatenate([target, mask, face, seen], axis=-1)[None]  # (1, H, W, 6)
        small = resize_images((stack * 255.0 + 0.5).astype(np.uint8), R)[0].numpy()
        # a pixel counts as seen only if all of its footprint is (the resize blends in the streaks)
        seen_small = np.where(small[..., 5:6] == 255, 255, 0).astype(np.uint8)
        return small[..., :3], small[..., 3:4], small[..., 4:5], seen_small

    with ThreadPoolExecutor(max_workers=2) as pool:
        loaded = list(tqdm(pool.map(load, range(T)), total=T, disable=not progress, desc="loading frames",
                           unit="frame"))
    images, masks, faces, seen = (torch.as_tensor(np.stack(parts)) for parts in zip(*loaded))
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32)[:T])  # noqa: E731  (per-frame arrays)
    return FrameSet(images=images, masks=masks, face_masks=faces, seen=None if bool((seen == 255).all()) else seen,
                    params=result.head_params()[:T], world_to_cam=t(result.world_to_cam),
                    K=scale_intrinsics(t(result.K), int(result.crop_size), R),
                    shape=torch.as_tensor(np.asarray(result.shape, dtype=np.float32)),
                    vertex_offsets=result.torch_vertex_offsets(),
                    index=torch.as_tensor(np.asarray(result.frame_index, dtype=np.int64)[:T]))
