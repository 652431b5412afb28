"""Gaussian-splat file formats beyond the 3DGS ``.ply`` (which :mod:`dejavu.export` writes), and the file frame.

Every writer takes activated arrays in the head frame (:func:`dejavu.export.gaussians_to_arrays`): means
(N, 3) m, quats (N, 4) wxyz unit, scales (N, 3) m, opacities (N,) in [0, 1], colors (N, 3) RGB.

**Frame.** The head frame is +Y up, +Z out of the face, +X the subject's left (right-handed, metres).
``up="-y"`` turns it 180 degrees about X (y -> -y, z -> -z, a rotation, not a mirror): the COLMAP /
OpenCV convention that most 3DGS scenes use and that SuperSplat, antimatter15's viewer and the 3DGS SIBR
viewer assume, so the head opens upright there. ``.spz`` always stores Niantic's own frame (RUB:
+X right, +Y up, +Z back, which is the head frame), as its specification says; readers convert from it.

**Formats and their quantisation** (what a round trip through an independent reader keeps; measured
figures on a 48k-Gaussian photo avatar in docs/INTERCHANGE.md):

- ``.splat`` (antimatter15/splat): 32 bytes a splat, float32 position and linear scale (exact), RGBA
  uint8 (colour clamped to [0, 1], then to 1/255; opacity to 1/255), quaternion w, x, y, z as uint8
  ``round(q * 128 + 128)`` (components to 1/128: covariances within ~2 %). Sorted by size x opacity,
  largest first, as antimatter15's converter does. No spherical harmonics.
- ``.spz`` (Niantic, via ``gsply``, v3 gzip container): positions 24-bit fixed point with 12
  fractional bits (1/4096 m = 0.24 mm steps), log-scales to 1/16 (scales within 3.2 %) and clamped to
  [e^-10, e^6] m (Gaussians thinner than 0.045 mm get 0.045 mm), colours to 1/(0.15 * 255) in SH units
  (RGB within 0.004), opacity to 1/255, quaternions smallest-three with 9-bit components.
- ``.compressed.ply`` (PlayCanvas, via ``gsply``): chunks of 256 splats, each quantised within its
  chunk's bounds: positions 11/10/11 bits, log-scales 11/10/11 bits, colours and opacity 8 bits,
  quaternions smallest-three 2+10+10+10 bits; the tolerance scales with each chunk's extent
  (0.1 mm on a head).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dejavu.errors import DejavuError
from dejavu.gaussians.channels import SH_C0

#: Frames a file can be written in (``--up``).
UP_CHOICES = ("y", "-y")
#: The frame files are written in unless ``--up`` says otherwise.
DEFAULT_UP = "-y"
#: Output suffixes of ``dejavu export`` (the longest match wins: ``.compressed.ply`` before ``.ply``).
SUFFIXES: tuple[str, ...] = (".compressed.ply", ".ply", ".splat", ".spz")
#: Header text stating each frame (written into .ply comments and the export index).
FRAME_TEXT = {
    "y": "head frame: +Y up, +Z out of the face, +X subject's left (right-handed, metres; three.js/OpenGL style)",
    "-y": "COLMAP/OpenCV frame: -Y up, -Z out of the face, +X subject's left (right-handed, metres; the head "
          "frame turned 180 degrees about X)",
}
_EPS = 1e-6


def to_file_frame(arrays: dict[str, np.ndarray], up: str) -> dict[str, np.ndarray]:
    """Activated arrays in the head frame -> the same Gaussians in the file frame named by ``up``."""
    if up not in UP_CHOICES:
        raise DejavuError(f"--up {up!r}: expected one of {', '.join(UP_CHOICES)}")
    if up == "y":
        return arrays
    out = dict(arrays)
    out["means"] = arrays["means"] * np.array([1.0, -1.0, -1.0], dtype=np.float32)
    w, x, y, z = np.moveaxis(arrays["quats"], -1, 0)
    # (0, 1, 0, 0) * q: the 180-degree turn about X composed before each Gaussian's own rotation.
    out["quats"] = np.stack([-x, w, -z, y], axis=-1)
    return out


# ---------------------------------------------------------------------------------------------
# .splat (antimatter15)
# ---------------------------------------------------------------------------------------------

SPLAT_DTYPE = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])


def splat_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The antimatter15 ``.splat`` encoding of activated arrays (N splats -> 32 N bytes)."""
    order = np.argsort(-(arrays["scales"].prod(-1) * arrays["opacities"]), kind="stable")
    out = np.zeros(len(order), dtype=SPLAT_DTYPE)
    out["position"] = arrays["means"][order]
    out["scale"] = arrays["scales"][order]
    rgba = np.concatenate([arrays["colors"][order], arrays["opacities"][order, None]], axis=-1)
    out["rgba"] = np.clip(np.round(rgba * 255.0), 0, 255).astype(np.uint8)
    q = arrays["quats"][order]
    q = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
    out["rot"] = np.clip(np.round(q * 128.0 + 128.0), 0, 255).astype(np.uint8)
    return out.tobytes()


def read_splat(path: str | Path) -> dict[str, np.ndarray]:
    """Read an antimatter15 ``.splat`` file -> activated arrays (means, quats, scales, opacities, colors)."""
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) % SPLAT_DTYPE.itemsize:
        raise DejavuError(f"{path}: {len(raw)} bytes is not a whole number of 32-byte splats")
    data = np.frombuffer(raw, dtype=SPLAT_DTYPE)
    q = (data["rot"].astype(np.float32) - 128.0) / 128.0
    rgba = data["rgba"].astype(np.float32) / 255.0
    return {"means": data["position"].copy(), "scales": data["scale"].copy(),
            "quats": q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12),
            "opacities": rgba[:, 3].copy(), "colors": rgba[:, :3].copy()}


# ---------------------------------------------------------------------------------------------
# gsply: .spz and PlayCanvas .compressed.ply
# ---------------------------------------------------------------------------------------------

def _gsdata(arrays: dict[str, np.ndarray]):
    """Activated arrays -> gsply's GSData in PLY storage form (log-scales, logit opacities, SH DC)."""
    try:
        import gsply
    except ImportError:  # pragma: no cover - a declared dependency
        raise DejavuError("writing .spz / .compressed.ply needs the gsply package (pip install gsply==0.4.6)") from None
    op = np.clip(arrays["opacities"].astype(np.float32), _EPS, 1.0 - _EPS)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return gsply.GSData(
        means=f32(arrays["means"]), scales=f32(np.log(np.maximum(arrays["scales"], 1e-12))),
        quats=f32(arrays["quats"]), opacities=f32(np.log(op) - np.log1p(-op)),
        sh0=f32((arrays["colors"] - 0.5) / SH_C0), shN=None, _format=gsply.create_ply_format(0))


def write_spz_file(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Niantic ``.spz`` (v3, gzip) at ``path`` (written as is: the caller makes it atomic)."""
    import gsply

    gsply.write_spz(path, _gsdata(arrays), version=3)


def compressed_ply_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """PlayCanvas compressed ``.ply`` bytes."""
    import gsply

    return gsply.compress_to_bytes(_gsdata(arrays))


def read_with_gsply(path: str | Path) -> dict[str, np.ndarray]:
    """Read ``.ply`` / ``.compressed.ply`` / ``.spz`` with gsply -> activated arrays (an independent reader)."""
    import gsply

    path = Path(path)
    data = gsply.read_spz(path) if path.suffix.lower() == ".spz" else gsply.plyread(path)
    q = np.asarray(data.quats, dtype=np.float32)
    return {"means": np.asarray(data.means, np.float32), "scales": np.exp(np.asarray(data.scales, np.float32)),
            "quats": q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12),
            "opacities": 1.0 / (1.0 + np.exp(-np.asarray(data.opacities, np.float32))),
            "colors": 0.5 + SH_C0 * np.asarray(data.sh0, np.float32)}
