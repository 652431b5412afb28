"""The tracking driver: :func:`track` runs the steps of :mod:`dejavu.track` on a photo, a folder of photos
or a video and writes (or reads back from its cache) the tracking folder. Output format: docs/TRACKING.md."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from dejavu import __version__
from dejavu.device import resolve_device
from dejavu.errors import DejavuError
from dejavu.head import load_head, load_head_assets
from dejavu.io import PART_SUFFIX, clean_stale_parts, output_mode, part_prefix, write_json
from dejavu.render.camera import camera_to_pixels, to_camera
from dejavu.track import align
from dejavu.track.align import inside_source, warp
from dejavu.track.fit import FitConfig, fit_landmarks
from dejavu.track.graphs import MediaPipeGraphs
from dejavu.track.landmarks import TINY_FACE_PX
from dejavu.track.masks import head_masks, rasterize_labels
from dejavu.track.overlay import draw_overlay, face_shading
from dejavu.track.result import SUMMARY_FILE, TRACKING_FILE, TrackResult, load_tracking, save_tracking
from dejavu.track.video import iter_frames, probe

# This module brings torch and numba (the fit, the head models, the masks); the MediaPipe child of
# dejavu.track.prefetch never imports it (dejavu/track/__init__.py loads the package's names on first use).

log = logging.getLogger(__name__)

#: Crop-parameter smoothing for videos, seconds (Gaussian sigma).
ALIGN_SMOOTH_S = 0.08


def _code_version() -> str:
    """Hash of the tracker's own sources: results are recomputed when the code changes."""
    h = hashlib.sha256(__version__.encode())
    for p in sorted(Path(__file__).parent.glob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def cache_key(input_path: Path, settings: dict) -> str:
    """Key of one tracking run: input file size + mtime (all files of a folder), settings, code version."""
    p = Path(input_path).resolve()
    files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
    stamp = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    blob = json.dumps({"input": str(p), "files": stamp, "settings": settings, "code": _code_version()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def track(input: str | Path, out_dir: str | Path, head: str = "builtin", fps: float | None = None,
          max_frames: int | None = None, crop_size: int = 512, device: str = "cpu", overlay: bool = True,
          force: bool = False, config=None, progress: bool = True, prefetch=None, graphs=None) -> TrackResult:
    """Track a photo, a folder of photos or a video; write results to ``out_dir`` and return them.

    Args:
        input: image, folder of images or video file.
        out_dir: output directory (replaced atomically; an existing one must be a tracking directory).
        head: head-model spec for :func:`dejavu.head.load_head`.
        fps: resample videos to this frame rate (None = every frame). max_frames: cap on frames.
        crop_size: side of the aligned crops, pixels.
        device: ``--device``; the landmark fit is small and runs on the CPU whatever is asked.
        overlay: write ``overlay.mp4`` (videos, folders) or ``overlay.png`` (one image).
        force: ignore a cached result with the same key.
        config: a :class:`dejavu.track.fit.FitConfig` (defaults if None).
        prefetch: a :class:`dejavu.track.prefetch.MediaPipePrefetch` started earlier for this image
            (its landmarks and person mask are used; results are identical without it).
        graphs: a :class:`dejavu.track.graphs.MediaPipeGraphs` to take the MediaPipe graphs from and leave
            them in (a process tracking many inputs builds them once); None builds and closes its own.

    Returns:
        :class:`TrackResult` (also readable later with :func:`load_tracking`).
    """
    input, out_dir = Path(input), Path(out_dir)
    info = probe(input)
    resolve_device(device)  # validates the flag; fitting stays on the CPU
    cfg = config or FitConfig()

    settings = {"head": head, "head_fingerprint": load_head_assets(head).fingerprint(), "fps": fps, "max_frames": max_frames, "crop_size": crop_size,
                "overlay": overlay, "fit": asdict(cfg)}
    key = cache_key(input, settings)
    _check_out_dir(out_dir)
    cached = None if force else _cached(out_dir, key)
    if cached is not None:
        log.info("tracking: reusing %s (same input, settings and code)", out_dir)
        if prefetch is not None:
            prefetch.close()
        return cached
    pre = None
    if prefetch is not None:
        pre = prefetch.take(input, crop_size) if info.kind == "image" else None
        prefetch.close()
    parent = _parent(out_dir)
    clean_stale_parts(parent, out_dir.name)
    tmp = Path(tempfile.mkdtemp(prefix=part_prefix(out_dir.name), suffix=PART_SUFFIX, dir=parent))
    tmp.chmod(output_mode(directory=True))  # mkdtemp makes 0700; the folder keeps the user's umask
    try:
        # log lines (several faces, frames without a face, a truncated video) on lines of their own, above
        # the progress bars, not glued to a bar that the next redraw wipes
        with logging_redirect_tqdm() if progress else contextlib.nullcontext():
            result = _run(input, tmp, info, head, fps, max_frames, crop_size, overlay, cfg, settings, key, progress,
                          pre, graphs)
        _replace_dir(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    result.directory = str(out_dir)
    if progress:
        print(f"tracking written to {out_dir}")
    else:
        log.info("tracking written to %s", out_dir)
    return result


def _cached(out_dir: Path, key: str) -> TrackResult | None:
    """The tracking already in ``out_dir`` if it was made with cache key ``key`` (an unreadable one: None)."""
    if not (out_dir / TRACKING_FILE).is_file():
        return None
    try:
        cached = load_tracking(out_dir)
    except DejavuError:
        return None
    return cached if cached is not None and cached.cache_key == key else None


def _parent(out_dir: Path) -> Path:
    parent = out_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    return parent


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / TRACKING_FILE).exists())):
        raise DejavuError(f"-o {out_dir}: exists and is not a tracking directory; choose a new or empty folder")


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f"{part_prefix(out_dir.name)}old-{time.time_ns()}")
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _run(input: Path, tmp: Path, info, head_spec: str, fps, max_frames, crop_size: int, overlay: bool, cfg,
         settings: dict, key: str, progress: bool, pre=None, graphs=None) -> TrackResult:
    if graphs is None:
        with MediaPipeGraphs() as own:
            return _run(input, tmp, info, head_spec, fps, max_frames, crop_size, overlay, cfg, settings, key,
                        progress, pre, own)
    head = load_head(head_spec, "cpu")  # not timed: a first built-in build is a one-off cache fill
    t0, c0 = time.perf_counter(), time.process_time()

    # 1. landmarks (streaming; frames are decoded again in step 4 instead of being kept in memory)
    lms = _landmarks(input, info, fps, max_frames, progress, graphs, pre)
    _check_faces(input, info, lms, crop_size)
    points = np.stack(lms.points)
    out_fps = (min(fps, info.fps) if fps else info.fps) if info.kind == "video" else (fps or 0.0)
    t_landmarks, c_landmarks = time.perf_counter() - t0, time.process_time() - c0

    # 2. alignment
    affine, lm_crop = _align(points, info.kind == "video", out_fps, crop_size)

    # 3. fit
    fit_bar = tqdm(total=len(lms.index), desc="fitting", unit="frame", disable=not progress)
    fit = fit_landmarks(head, lm_crop, crop_size, video=info.kind == "video", config=cfg,
                        progress=lambda n: fit_bar.update(n))
    fit_bar.close()
    t_fit, c_fit = time.perf_counter() - t0 - t_landmarks, time.process_time() - c0 - c_landmarks

    # 4. crops, masks, overlay
    idx, failed = lms.index, lms.failed
    source_hw = _write_frames(input, tmp, fps, max_frames, idx, affine, crop_size, head, fit, lm_crop, overlay,
                              info.kind, out_fps, progress, seg=graphs.segmenter() if pre is None else None,
                              person=pre.person if pre is not None else None)

    result = TrackResult(
        frame_index=np.asarray(idx, np.int64), frame_time=np.asarray(lms.times, np.float64),
        shape=fit.shape.numpy(), **fit.params.numpy(),
        pose6=fit.pose6.numpy(), world_to_cam=fit.world_to_cam.numpy(), K=fit.K.numpy(),
        landmarks_2d=lm_crop, fitted_2d=fit.projected.numpy().astype(np.float32), crop_affine=affine,
        error_px=fit.error_px.numpy(), vertex_offsets=fit.vertex_offsets.numpy() if cfg.detail else None,
        source_hw=source_hw,
        crop_size=crop_size, fps=float(out_fps), head_spec=head_spec,
        input_path=str(input.resolve()), failed_frames=[int(i) for i in failed], settings=settings,
        cache_key=key, directory=str(tmp))
    save_tracking(result, tmp)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0  # CPU: this process's (busy machines)
    stages = {"landmarks": (t_landmarks, c_landmarks), "fit": (t_fit, c_fit),
              "crops_masks_overlay": (elapsed - t_landmarks - t_fit, cpu - c_landmarks - c_fit)}
    summary = _summary(input, info.kind, result, elapsed, stages, min(lms.sizes), head_spec, out_fps, key)
    write_json(tmp / SUMMARY_FILE, summary)
    log.info("tracked %d frames, %.3f s/frame, landmark RMSE %.2f px", len(idx), summary["seconds_per_frame"],
             summary["landmark_rmse_px"])
    return result


@dataclass
class _Landmarks:
    """Step 1's output: per frame with a face, its index, time (s), (478, 2) landmarks (source pixels) and face
    size (px); the indices of the frames without one."""

    index: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    points: list[np.ndarray] = field(default_factory=list)
    sizes: list[float] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def _landmarks(input: Path, info, fps, max_frames, progress: bool, graphs: MediaPipeGraphs, pre=None) -> _Landmarks:
    """MediaPipe landmarks of every frame (streamed; ``graphs``' detector), or of the single image a prefetch
    child already did."""
    out = _Landmarks()
    expected = int(info.n_frames * min(1.0, fps / info.fps)) if fps and info.fps else info.n_frames
    bar = tqdm(total=min(max_frames or expected, expected) or None, desc="landmarks", unit="frame",
               disable=not progress)
    if pre is not None:  # a single image whose landmarks a child process found (dejavu.track.prefetch)
        bar.update(1)
        if pre.points is None:
            out.failed.append(0)
        else:
            out.index, out.times, out.points, out.sizes = [0], [0.0], [pre.points], [pre.size]
            if pre.n_faces > 1:
                log.info("%d faces found; tracking the largest", pre.n_faces)
    else:
        detector = graphs.detector(video=info.kind == "video")
        for frame in iter_frames(input, fps, max_frames):
            det = detector(frame.image)
            bar.update(1)
            if det is None:
                out.failed.append(frame.index)
                continue
            out.index.append(frame.index)
            out.times.append(frame.time)
            out.points.append(det.points)
            out.sizes.append(det.size)
    bar.close()
    return out


def _check_faces(input: Path, info, lms: _Landmarks, crop_size: int) -> None:
    """Refuse an input without a face; warn about frames without one and about tiny faces."""
    if not lms.index:
        what = "the image" if info.kind == "image" else f"any of its {len(lms.failed)} frames"
        raise DejavuError(f"{input}: no face found in {what}")
    if lms.failed:
        log.warning("%s: no face in %d of %d frames (skipped): %s", input, len(lms.failed),
                    len(lms.failed) + len(lms.index), _ranges(lms.failed))
    if min(lms.sizes) < TINY_FACE_PX:
        log.warning("%s: the face is tiny (%.0f px across); crops are upscaled to %d px and will be blurry",
                    input, min(lms.sizes), crop_size)


def _align(points: np.ndarray, video: bool, fps: float, crop_size: int) -> tuple[np.ndarray, np.ndarray]:
    """FFHQ-style crops of (B, 478, 2) source landmarks, smoothed over time for videos: the (B, 2, 3) crop
    affines and the landmarks in crop pixels (B, 478, 2) float32."""
    params = align.crop_params(points)
    if video:
        params = align.smooth_params(params, ALIGN_SMOOTH_S * fps)
    affine = align.params_to_affine(params, crop_size)
    return affine, align.apply_affine(affine, points).astype(np.float32)


def _summary(input: Path, kind: str, result: TrackResult, elapsed: float, stages: dict[str, tuple[float, float]],
             min_face_px: float, head_spec: str, fps: float, key: str) -> dict:
    """summary.json: frames, timings (``stages``: name -> (wall s, CPU s)), landmark error, settings."""
    n = len(result.frame_index)
    return {
        "input": str(input.resolve()), "kind": kind, "frames": n, "failed_frames": result.failed_frames,
        "seconds": round(elapsed, 3), "seconds_per_frame": round(elapsed / n, 4),
        "frames_per_second": round(n / elapsed, 2),
        "stage_seconds": {name: round(wall, 3) for name, (wall, _) in stages.items()},
        "stage_cpu_seconds": {name: round(cpu, 3) for name, (_, cpu) in stages.items()},
        "landmark_rmse_px": round(float(np.sqrt(np.mean(result.error_px ** 2))), 3),
        "landmark_rmse_px_max": round(float(result.error_px.max()), 3), "crop_size": result.crop_size,
        "fov_deg": round(result.fov_deg, 2),
        "head": head_spec, "fps": fps, "min_face_px": round(float(min_face_px), 1), "cache_key": key,
    }


def _ranges(values: list[int]) -> str:
    out, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            out.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(out[:10]) + (" ..." if len(out) > 10 else "")


def _imwrite(path: Path, image: np.ndarray, params: list) -> None:
    import cv2

    if not cv2.imwrite(str(path), image, params):
        raise DejavuError(f"{path}: could not write the image")


def _write_frames(input, tmp: Path, fps, max_frames, idx, affine, crop_size, head, fit, lm_crop, overlay,
                  kind, out_fps, progress, seg=None, person: np.ndarray | None = None) -> np.ndarray:
    """Write crops, masks and the overlay; returns each frame's source (height, width) (B, 2).

    The person mask comes from ``seg`` (a PersonSegmenter, left open) or, for a prefetched single image,
    is ``person`` (C, C)."""
    import cv2

    for sub in ("crops", "masks", "face_masks"):
        (tmp / sub).mkdir()
    faces = head.faces.numpy()
    labels = head.face_region.numpy().astype(np.int32)
    pos = {int(f): i for i, f in enumerate(idx)}
    png = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    writer = _overlay_writer(tmp / "overlay.mp4", out_fps) if overlay and kind != "image" else None
    bar = tqdm(total=len(idx), desc="crops+masks", unit="frame", disable=not progress)
    chunk, cache = 64, {}
    pool = ThreadPoolExecutor(max_workers=2)  # PNG encoding releases the GIL: overlap it with the rest
    pending = []
    source_hw = np.zeros((len(idx), 2), np.int64)
    try:
        for frame in iter_frames(input, fps, max_frames):
            i = pos.get(int(frame.index))
            if i is None:
                continue
            if i not in cache:  # mesh for a chunk of frames at once
                cache = _project_meshes(head, fit, slice(i, min(len(idx), i + chunk)))
            xy, cam = cache[i]
            crop = warp(frame.image, affine[i], crop_size)
            source_hw[i] = frame.image.shape[:2]
            mesh_labels, face_index = rasterize_labels(xy, cam[:, 2], faces, labels, crop_size, crop_size)
            # where the crop leaves the frame, warp repeats the border: streaks the segmenter may call person
            seen = inside_source(affine[i], source_hw[i], crop_size)
            head_mask, face_mask = head_masks((seg(crop) if seg is not None else person) * seen, mesh_labels,
                                              fit.projected[i].numpy())
            name = f"{int(frame.index):06d}.png"
            for sub, pic in (("crops", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)), ("masks", head_mask.astype(np.uint8) * 255),
                             ("face_masks", face_mask.astype(np.uint8) * 255)):
                pending.append(pool.submit(_imwrite, tmp / sub / name, pic, png))
            if overlay:
                pic = draw_overlay(crop, face_index, face_shading(cam, faces), lm_crop[i], fit.projected[i].numpy())
                if writer is not None:
                    writer.append_data(pic)
                else:
                    cv2.imwrite(str(tmp / "overlay.png"), cv2.cvtColor(pic, cv2.COLOR_RGB2BGR))
            bar.update(1)
        for job in pending:
            job.result()
    finally:
        pool.shutdown(wait=True)
        bar.close()
        if writer is not None:
            writer.close()
    return source_hw


def _overlay_writer(path: Path, fps: float):
    """The overlay video's writer (H.264; 10 fps for a folder of photos, which has no rate)."""
    import imageio.v2 as imageio

    return imageio.get_writer(path, format="FFMPEG", fps=fps or 10.0, codec="libx264", quality=7,
                              macro_block_size=1, ffmpeg_log_level="error", output_params=["-preset", "veryfast"])


def _project_meshes(head, fit, frames: slice) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Frame index -> the fitted mesh of that frame in crop pixels (V, 2) and camera space (V, 3), metres."""
    with torch.no_grad():
        verts = head(fit.shape, **fit.params[frames].kwargs(), vertex_offsets=fit.vertex_offsets)
        cam = to_camera(verts, fit.world_to_cam[frames])
        xy = camera_to_pixels(cam, fit.K[frames])
    return {frames.start + k: (xy[k].numpy(), cam[k].numpy()) for k in range(xy.shape[0])}
