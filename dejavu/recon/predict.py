"""Single image -> avatar: track, run the reconstruction network, save (paper section 3.3).

``reconstruct(image, out_dir)`` writes into ``out_dir``:
    avatar.json + avatar.safetensors   the Avatar: mean_offsets = the network's offsets, resampled to the
                                       avatar's UV size, the Gaussians of the sides it does not see grown to
                                       close the gaps between them (``dejavu.gaussians.coverage``), with the
                                       colours the photo sees read off the photo
                                       (``dejavu.recon.photo_texture``); no delta/blendmaps
    tracking/                          the tracker's result for the photo (crop, masks, parameters)
    reconstruction.png                 input crop | render from the tracked camera
    turntable.mp4                      orbit of +-60 degrees yaw around the head
    avatar.ply                         the Gaussians (tracked expression) as a standard 3DGS .ply
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from dejavu.avatar import Avatar
from dejavu.device import resolve_device
from dejavu.errors import DejavuError
from dejavu.export import write_ply
from dejavu.gaussians.coverage import close_gaps
from dejavu.gaussians.resample import resample_offsets
from dejavu.gaussians.uvmap import Gaussians, UVGaussianMap
from dejavu.io import write_image, write_video
from dejavu.limits import check_uv_size
from dejavu.outputs import check_output_dir
from dejavu.recon.photo_texture import photo_texture
from dejavu.recon.train import load_weights
from dejavu.render import render
from dejavu.render.camera import intrinsics, orbit_pose6, pose6_to_world_to_cam
from dejavu.track import track
from dejavu.track.fit import fast_photo_config
from dejavu.track.masks import rasterize_labels
from dejavu.track.result import TrackResult

#: The shipped weights (trained on this project's CPU with configs/recon_cpu.json).
DEFAULT_WEIGHTS = "recon_cpu.safetensors"
#: The avatar's UV side: finer than the CPU network's 64 so the photo's colours keep their detail
#: (face PSNR on unseen photos: 21-25 dB at 128, 24-27 dB at 256 before back-projection).
DEFAULT_UV_SIZE = 256
#: Back-projection steps after reading the photo's colours (each one render; 3 gain 2-4 dB on the face).
DEFAULT_PHOTO_ITERATIONS = 3


def default_weights() -> Path:
    """Path of the shipped reconstruction weights inside the package."""
    path = Path(str(resources.files("dejavu.data") / DEFAULT_WEIGHTS))
    if not path.is_file():
        raise DejavuError(f"the shipped reconstruction weights {path} are missing; pass --weights FILE "
                          "(train some with `dejavu train recon --config configs/recon_cpu.json`)")
    return path


def network_input(crop: np.ndarray, mask: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """Aligned crop (H, W, 3) in [0, 1] + head mask (H, W) -> network input (1, 3, H, W) in [-1, 1], background white."""
    m = mask.astype(np.float32)[..., None]
    img = crop * m + (1.0 - m)
    return torch.as_tensor(img * 2.0 - 1.0, dtype=torch.float32, device=device).permute(2, 0, 1)[None]


@dataclass
class Reconstruction:
    """What :func:`reconstruct` made (tensors on the model's device)."""

    avatar: object  # dejavu.avatar.Avatar
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def predict_offsets(model, crop: np.ndarray, mask: np.ndarray, shape: np.ndarray) -> torch.Tensor:
    """Network offsets (13, S, S) for one tracked crop/mask and identity ``shape`` (Ns,)."""
    dev = next(model.net.parameters()).device
    with torch.no_grad():
        x = network_input(crop, mask, dev)
        s = torch.as_tensor(np.asarray(shape, np.float32), device=dev)[None]
        return model.offsets(x, s)[0]


def iter_turntable(gaussians: Gaussians, distance: float, center: torch.Tensor, size: int = 256, n_frames: int = 48,
                   max_yaw_deg: float = 60.0, backend: str = "auto", chunk: int = 8):
    """Renders orbiting 0 -> +max -> -max -> 0 degrees yaw around ``center`` (3,) m, yielded one by one
    ((size, size, 3) float in [0, 1]) and rendered ``chunk`` at a time: a video writer fed from it
    encodes one chunk while the next renders."""

    t = np.linspace(0.0, 1.0, n_frames, endpoint=False)
    yaw = max_yaw_deg * np.sin(2 * np.pi * t)
    pose = orbit_pose6(yaw.tolist(), distance=distance, center=tuple(float(c) for c in center))
    dev = gaussians.means.device
    w2c = pose6_to_world_to_cam(pose.to(dev))
    K = intrinsics(size, size, batch=n_frames, device=dev)
    for lo in range(0, n_frames, chunk):
        sl = slice(lo, min(n_frames, lo + chunk))
        n = sl.stop - sl.start
        rep = lambda x: x.expand(n, *x.shape[1:])  # noqa: E731
        out = gaussians.__class__(*(rep(getattr(gaussians, k)) for k in ("means", "quats", "scales", "opacities", "colors")))
        with torch.no_grad():
            yield from out.render(w2c[sl], K[sl], size, size, backend=backend).rgb.clamp(0, 1).cpu().numpy()


def warm_kernels() -> None:
    """Load the numba kernels (tracker masks, CPU renderer) from numba's cache on tiny inputs.

    Loading costs ~0.6 s of mostly numba bookkeeping the first time a process calls them; run in a
    thread, it overlaps with loading the network and fitting the landmarks.
    """

    K = torch.tensor([[[16.0, 0.0, 8.0], [0.0, 16.0, 8.0], [0.0, 0.0, 1.0]]])
    render(torch.zeros(1, 1, 3), torch.tensor([[[1.0, 0.0, 0.0, 0.0]]]), torch.full((1, 1, 3), 0.01), torch.ones(1, 1),
           torch.ones(1, 1, 3), torch.eye(4)[None], K, 16, 16, backend="cpu")
    rasterize_labels(np.zeros((3, 2), np.float32), np.ones(3, np.float32), np.array([[0, 1, 2]]), np.zeros(1, np.int32), 8, 8)


def reconstruct(image: str | Path, out_dir: str | Path, head: str | None = None, device: str = "auto",
                weights: str | Path | None = None, turntable: bool = True, ply: bool = True,
                turntable_size: int = 256, crop_size: int = 512, backend: str = "auto", uv_size: int | None = DEFAULT_UV_SIZE,
                photo_iterations: int | None = DEFAULT_PHOTO_ITERATIONS, prefetch=None,
                force: bool = False) -> Reconstruction:
    """Reconstruct an avatar from one photo (see the module docstring for what is written).

    Args:
        image: a photo with one face (the largest is used).
        out_dir: output folder.
        head: head spec; must be the head the weights were trained on (default: the weights' own).
        device: auto | cpu | cuda. weights: a weights file (default: the shipped one).
        uv_size: the avatar's UV side (None: the network's own); the network's offsets are resampled to it.
        photo_iterations: back-projection steps of the photo colours (None: keep the network's colours).
        prefetch: a :class:`dejavu.track.prefetch.MediaPipePrefetch` started for ``image`` before torch loaded.
        force: replace a finished avatar in ``out_dir`` (refused otherwise, before any work).
    """
    t0 = time.perf_counter()
    check_output_dir(out_dir, kind="avatar", force=force)
    if uv_size is not None:
        check_uv_size(uv_size)
    dev = resolve_device(device)
    if dev.type == "cpu":
        import threading

        threading.Thread(target=warm_kernels, name="dejavu-warm-kernels", daemon=True).start()
    out_dir = Path(out_dir)
    model = load_weights(weights or default_weights(), dev)
    if head is not None and head != model.head_spec:
        raise DejavuError(f"--head {head}: the reconstruction weights were trained on head {model.head_spec!r}; "
                          "use that head or weights trained on this one")
    t1 = time.perf_counter()
    result = track(image, out_dir / "tracking", head=model.head_spec, crop_size=crop_size, overlay=False,
                   progress=False, prefetch=prefetch, config=fast_photo_config())
    t2 = time.perf_counter()
    crop, mask = result.load_crop(0), result.load_mask(0)
    offsets = predict_offsets(model, crop, mask, result.shape)
    uvmap = model.uvmap
    if uv_size is not None and uv_size != uvmap.size:
        uvmap = UVGaussianMap(model.head, uv_size).to(dev)
        offsets = resample_offsets(offsets, model.uvmap.mask, uvmap.mask)
    verts, w2c, K = _tracked_mesh(model.head, result, dev)
    offsets = close_gaps(uvmap, verts, offsets)  # the network's hidden-side Gaussians leave gaps between them
    settings = {"source": str(Path(image).resolve()), "crop_size": crop_size, "weights": str(weights or DEFAULT_WEIGHTS),
                "network_uv_size": model.uvmap.size}
    t3 = time.perf_counter()
    if photo_iterations is not None:
        offsets, settings["photo_texture"] = _photo_colors(uvmap, verts, offsets, crop, mask, w2c, K,
                                                           photo_iterations, backend)
    avatar = Avatar(head=model.head_spec, uv_size=uvmap.size, shape=torch.as_tensor(result.shape).float(),
                    vertex_offsets=result.torch_vertex_offsets(),
                    mean_offsets=offsets.cpu(), settings=settings, training={"kind": "single-image reconstruction"})
    files = {"avatar": avatar.save(out_dir)}
    t4 = time.perf_counter()
    with torch.no_grad():
        g = uvmap.gaussians(verts, offsets[None])
    files.update(_pictures(out_dir, g, w2c, K, crop, mask, backend, ply, turntable_size if turntable else None))
    t5 = time.perf_counter()
    seconds = {"load": t1 - t0, "track": t2 - t1, "network": t3 - t2, "photo_texture": t4 - t3, "outputs": t5 - t4,
               "total": t5 - t0}
    return Reconstruction(avatar=avatar, out_dir=out_dir, files=files, seconds=seconds)


def _tracked_mesh(head, result: TrackResult, dev: torch.device):
    """The photo's posed mesh (1, V, 3) in metres and its camera: world-to-camera (1, 4, 4) and intrinsics
    (1, 3, 3) in crop pixels."""
    w2c = torch.as_tensor(result.world_to_cam[:1], device=dev)
    K = torch.as_tensor(result.K[:1], device=dev)
    with torch.no_grad():
        verts = head(**result.identity(dev), **result.head_params(dev)[0].kwargs())
    return verts, w2c, K


def _photo_colors(uvmap: UVGaussianMap, verts: torch.Tensor, offsets: torch.Tensor, crop: np.ndarray,
                  mask: np.ndarray, w2c: torch.Tensor, K: torch.Tensor, iterations: int,
                  backend: str) -> tuple[torch.Tensor, dict]:
    """The offsets (13, S, S) with the colours the photo sees read off it (:func:`photo_texture`; crop (H, W, 3)
    and mask (H, W) in [0, 1], the posed mesh (1, V, 3)), and the settings recorded about it."""
    dev = offsets.device
    tex = photo_texture(uvmap, verts, offsets, torch.as_tensor(crop, device=dev)[None].float(),
                        torch.as_tensor(mask, device=dev)[None].float(), w2c, K, iterations=iterations,
                        backend=backend)
    return tex.offsets, {"iterations": iterations, "seen_fraction": round(float(tex.weight[uvmap.mask].mean()), 4),
                         "residual_rmse": [round(r, 5) for r in tex.residual_rmse]}


def _pictures(out_dir: Path, g, w2c: torch.Tensor, K: torch.Tensor, crop: np.ndarray, mask: np.ndarray, backend: str,
              ply: bool, turntable_size: int | None) -> dict[str, Path]:
    """reconstruction.png (the masked photo | the render at the crop's size), avatar.ply and turntable.mp4
    (when ``turntable_size``) of the Gaussians ``g`` (one frame); name -> path."""
    files = {}
    size = crop.shape[0]
    with torch.no_grad():
        render = g.render(w2c, K, size, size, backend=backend).rgb[0].clamp(0, 1).cpu().numpy()
    m = mask[..., None].astype(np.float32)
    files["reconstruction"] = write_image(out_dir / "reconstruction.png",
                                          np.concatenate([crop * m + (1 - m), render], axis=1))
    if ply:
        files["ply"] = write_ply(out_dir / "avatar.ply", g)
    if turntable_size:
        center = g.means[0].mean(0)
        distance = float(torch.linalg.norm(w2c[0, :3, 3]))
        # 30 frames at 15 fps: the same 2 s swing as 48 at 24; rendering the turntable is the largest
        # share of the command's 5 s budget (~25 ms a frame on 2 cores)
        frames = iter_turntable(g, distance, center, turntable_size, n_frames=30, backend=backend)
        files["turntable"] = write_video(out_dir / "turntable.mp4", frames, fps=15)
    return files
