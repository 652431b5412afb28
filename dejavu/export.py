"""Standard 3D Gaussian Splatting .ply files (the layout of the original 3DGS code), written with numpy.

One binary little-endian vertex element per Gaussian with float32 properties, in this order:
``x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 opacity scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3``:
positions in metres (head frame), zero normals, SH degree-0 colour coefficients
(rgb = 0.5 + SH_C0 * f_dc), opacity as a logit, scales as natural logs (metres), rotation as a
quaternion w, x, y, z. Viewers (SuperSplat, antimatter15/splat, the 3DGS SIBR viewer) read it as is.
``plyfile`` is GPL, so this module reads and writes the format itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dejavu.avatar import Avatar
from dejavu.device import resolve_device
from dejavu.drive.sequence import load_drive
from dejavu.errors import DejavuError
from dejavu.gaussians.channels import SH_C0
from dejavu.io import atomic_path

PLY_PROPERTIES: tuple[str, ...] = (
    "x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
    "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
)
_DTYPE = np.dtype([(name, "<f4") for name in PLY_PROPERTIES])
_EPS = 1e-6


def gaussians_to_ply_array(gaussians, index: int = 0) -> np.ndarray:
    """Structured (N,) array of :data:`PLY_PROPERTIES` from batch element ``index`` of ``gaussians``.

    ``gaussians`` has activated ``means`` (B, N, 3) m, ``quats`` (B, N, 4) wxyz, ``scales`` (B, N, 3) m,
    ``opacities`` (B, N) in [0, 1] and ``colors`` (B, N, 3) RGB (a ``dejavu.gaussians.uvmap.Gaussians``).
    """
    def pick(t: torch.Tensor) -> np.ndarray:
        return torch.as_tensor(t).detach().float().cpu().numpy()

    B = torch.as_tensor(gaussians.means).shape[0]
    if not -B <= index < B:
        raise DejavuError(f"--frame {index}: out of range for {B} frame(s)")
    means = pick(gaussians.means)[index]
    quats = pick(gaussians.quats)[index]
    scales = pick(gaussians.scales)[index]
    opacities = pick(gaussians.opacities)[index].reshape(-1)
    colors = pick(gaussians.colors)[index]
    quats = quats / np.maximum(np.linalg.norm(quats, axis=-1, keepdims=True), 1e-12)
    op = np.clip(opacities, _EPS, 1.0 - _EPS)
    out = np.zeros(len(means), dtype=_DTYPE)
    for i, axis in enumerate("xyz"):
        out[axis] = means[:, i]
    for i in range(3):
        out[f"f_dc_{i}"] = (colors[:, i] - 0.5) / SH_C0
        out[f"scale_{i}"] = np.log(np.maximum(scales[:, i], 1e-12))
    out["opacity"] = np.log(op) - np.log1p(-op)
    for i in range(4):
        out[f"rot_{i}"] = quats[:, i]
    return out


def write_ply(path: str | Path, gaussians, index: int = 0) -> Path:
    """Write batch element ``index`` of ``gaussians`` as a binary little-endian 3DGS .ply, atomically."""

    data = gaussians_to_ply_array(gaussians, index)
    header = "ply\nformat binary_little_endian 1.0\n"
    header += "comment written by dejavu (Gaussian Deja-vu head avatar)\n"
    header += f"element vertex {len(data)}\n"
    header += "".join(f"property float {name}\n" for name in PLY_PROPERTIES)
    header += "end_header\n"
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(header.encode("ascii"))
            fh.write(data.tobytes())
    return path


_PLY_TYPES = {"float": "f4", "float32": "f4", "double": "f8", "float64": "f8", "uchar": "u1", "uint8": "u1",
              "char": "i1", "int8": "i1", "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
              "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4"}


def read_ply(path: str | Path) -> dict[str, np.ndarray]:
    """Read the vertex element of a binary .ply (either endianness) into ``{property: (N,) array}``.

    Handles any scalar vertex properties (e.g. 3DGS files with f_rest_*); raises DejavuError for
    ASCII files, list properties in the vertex element, or truncated data.
    """
    path = Path(path)
    if not path.is_file():
        raise DejavuError(f"{path}: no such .ply file")
    raw = path.read_bytes()
    end = raw.find(b"end_header\n")
    if not raw.startswith(b"ply") or end < 0:
        raise DejavuError(f"{path}: not a .ply file (no ply header)")
    lines = raw[:end].decode("ascii", errors="replace").splitlines()
    body = raw[end + len(b"end_header\n"):]
    fmt, count, props, element = None, None, [], None
    for line in lines[1:]:
        parts = line.split()
        if not parts or parts[0] == "comment":
            continue
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "element":
            element = parts[1]
            if element == "vertex":
                count = int(parts[2])
            elif count is None:
                raise DejavuError(f"{path}: elements before 'vertex' are not supported")
        elif parts[0] == "property" and element == "vertex":
            if parts[1] == "list" or parts[1] not in _PLY_TYPES:
                raise DejavuError(f"{path}: vertex property {line!r} is not supported")
            props.append((parts[2], _PLY_TYPES[parts[1]]))
    if fmt not in ("binary_little_endian", "binary_big_endian"):
        raise DejavuError(f"{path}: ply format {fmt!r} is not supported (binary only)")
    if count is None:
        raise DejavuError(f"{path}: no vertex element")
    order = "<" if fmt == "binary_little_endian" else ">"
    dtype = np.dtype([(name, order + t) for name, t in props])
    if len(body) < dtype.itemsize * count:
        raise DejavuError(f"{path}: truncated ({len(body)} bytes of data for {count} vertices)")
    data = np.frombuffer(body, dtype=dtype, count=count)
    return {name: data[name].astype(data[name].dtype.newbyteorder("=")) for name, _ in props}


def ply_to_activated(props: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """3DGS .ply properties -> activated arrays: means (N,3), quats (N,4) wxyz, scales (N,3), opacities (N,), colors (N,3)."""
    stack = lambda names: np.stack([props[n] for n in names], axis=-1).astype(np.float32)  # noqa: E731
    quats = stack([f"rot_{i}" for i in range(4)])
    return {
        "means": stack(["x", "y", "z"]),
        "quats": quats / np.maximum(np.linalg.norm(quats, axis=-1, keepdims=True), 1e-12),
        "scales": np.exp(stack([f"scale_{i}" for i in range(3)])),
        "opacities": 1.0 / (1.0 + np.exp(-props["opacity"].astype(np.float32))),
        "colors": 0.5 + SH_C0 * stack([f"f_dc_{i}" for i in range(3)]),
    }


def export_avatar(avatar_dir: str | Path, out: str | Path, params: str | Path | None = None, frame: int = 0,
                  device: str = "cpu") -> tuple[Path, int]:
    """Write an avatar's Gaussians (neutral, or frame ``frame`` of a parameter file) to ``out``; (path, N)."""

    dev = resolve_device(device)
    avatar = Avatar.load(avatar_dir)
    model = avatar.model(dev)
    head = model.head
    if params is None:
        expr, jaw, eyes = torch.zeros(1, head.n_expr), torch.zeros(1, 3), torch.zeros(1, 6)
    else:
        drive = load_drive(params, avatar.head, str(dev))
        if not 0 <= frame < len(drive):
            raise DejavuError(f"--frame {frame}: out of range for {len(drive)} frame(s) in {params}")
        expr, jaw, eyes = (t[frame:frame + 1] for t in (drive.expression, drive.jaw, drive.eyes))
        if expr.shape[1] != head.n_expr:
            raise DejavuError(f"--params {params}: {expr.shape[1]} expression components, head has {head.n_expr}")
    with torch.no_grad():
        g = model(expr.to(dev), jaw.to(dev), eyes.to(dev))
    return write_ply(out, g), int(g.means.shape[1])
