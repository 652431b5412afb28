"""Exports of an avatar's Gaussians: the standard 3D Gaussian Splatting .ply (the layout of the original
3DGS code, written here with numpy) and, by the output's suffix, ``.splat``, ``.spz`` and PlayCanvas
``.compressed.ply`` (:mod:`dejavu.splat_formats`); one frame, or a driven sequence into a folder.

The .ply is one binary little-endian vertex element per Gaussian with float32 properties, in this order:
``x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 [f_rest_0 .. f_rest_44] opacity scale_0 scale_1 scale_2 rot_0 rot_1
rot_2 rot_3``: positions in metres, zero normals, SH degree-0 colour coefficients
(rgb = 0.5 + SH_C0 * f_dc), with ``sh_degree=3`` 45 zero higher-order coefficients (loaders such as
graphdeco's and SIBR require them), opacity as a logit, scales as natural logs (metres), rotation as a
quaternion w, x, y, z. The file's frame (``up``, :data:`dejavu.splat_formats.FRAME_TEXT`) is stated in a
header comment. ``plyfile`` is GPL, so this module reads and writes the format itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dejavu.avatar import Avatar
from dejavu.device import resolve_device
from dejavu.drive.sources import load_drive
from dejavu.errors import DejavuError
from dejavu.gaussians.channels import SH_C0
from dejavu.gaussians.uvmap import Gaussians
from dejavu.head.params import HeadParams
from dejavu.io import atomic_path, write_json
from dejavu.splat_formats import (
    DEFAULT_UP,
    FRAME_TEXT,
    SUFFIXES,
    compressed_ply_bytes,
    splat_bytes,
    to_file_frame,
    write_spz_file,
)

PLY_PROPERTIES: tuple[str, ...] = (
    "x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
    "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
)
_EPS = 1e-6
SH_DEGREES = (0, 3)


def ply_properties(sh_degree: int = 0) -> tuple[str, ...]:
    """Vertex properties of a 3DGS .ply of SH degree 0 or 3 (``f_rest_0..44`` after ``f_dc_*``)."""
    if sh_degree not in SH_DEGREES:
        raise DejavuError(f"--sh-degree {sh_degree}: expected 0 or 3")
    rest = tuple(f"f_rest_{i}" for i in range(45)) if sh_degree == 3 else ()
    return PLY_PROPERTIES[:9] + rest + PLY_PROPERTIES[9:]


def gaussians_to_arrays(gaussians: Gaussians, index: int = 0) -> dict[str, np.ndarray]:
    """Activated numpy arrays of batch element ``index``: means (N, 3) m, quats (N, 4) wxyz unit,
    scales (N, 3) m, opacities (N,) in [0, 1], colors (N, 3) RGB.

    ``gaussians`` has ``means`` (B, N, 3), ``quats`` (B, N, 4), ``scales`` (B, N, 3), ``opacities`` (B, N)
    and ``colors`` (B, N, 3) (a ``dejavu.gaussians.uvmap.Gaussians``).
    """
    def pick(t: torch.Tensor) -> np.ndarray:
        return torch.as_tensor(t).detach().float().cpu().numpy()

    B = torch.as_tensor(gaussians.means).shape[0]
    if not -B <= index < B:
        raise DejavuError(f"--frame {index}: out of range for {B} frame(s)")
    quats = pick(gaussians.quats)[index]
    return {
        "means": pick(gaussians.means)[index],
        "quats": quats / np.maximum(np.linalg.norm(quats, axis=-1, keepdims=True), 1e-12),
        "scales": pick(gaussians.scales)[index],
        "opacities": pick(gaussians.opacities)[index].reshape(-1),
        "colors": pick(gaussians.colors)[index],
    }


def arrays_to_ply_array(arrays: dict[str, np.ndarray], sh_degree: int = 0) -> np.ndarray:
    """Structured (N,) array of :func:`ply_properties` from activated arrays (in the file's frame)."""
    props = ply_properties(sh_degree)
    means = arrays["means"]
    op = np.clip(arrays["opacities"], _EPS, 1.0 - _EPS)
    out = np.zeros(len(means), dtype=np.dtype([(name, "<f4") for name in props]))
    for i, axis in enumerate("xyz"):
        out[axis] = means[:, i]
    for i in range(3):
        out[f"f_dc_{i}"] = (arrays["colors"][:, i] - 0.5) / SH_C0
        out[f"scale_{i}"] = np.log(np.maximum(arrays["scales"][:, i], 1e-12))
    out["opacity"] = np.log(op) - np.log1p(-op)
    for i in range(4):
        out[f"rot_{i}"] = arrays["quats"][:, i]
    return out


def gaussians_to_ply_array(gaussians: Gaussians, index: int = 0, up: str = "y", sh_degree: int = 0) -> np.ndarray:
    """Structured (N,) array of :func:`ply_properties` from batch element ``index`` of ``gaussians``,
    in the frame named by ``up`` (``"y"``: the head frame)."""

    return arrays_to_ply_array(to_file_frame(gaussians_to_arrays(gaussians, index), up), sh_degree)


def ply_bytes(arrays: dict[str, np.ndarray], up: str, sh_degree: int = 0) -> bytes:
    """A binary little-endian 3DGS .ply of activated arrays already in the frame named by ``up``."""

    data = arrays_to_ply_array(arrays, sh_degree)
    header = "ply\nformat binary_little_endian 1.0\n"
    header += "comment written by dejavu (Gaussian Deja-vu head avatar)\n"
    header += f"comment {FRAME_TEXT[up]}\n"
    header += f"element vertex {len(data)}\n"
    header += "".join(f"property float {name}\n" for name in data.dtype.names)
    header += "end_header\n"
    return header.encode("ascii") + data.tobytes()


def suffix_of(path: str | Path) -> str:
    """The export format of ``path`` (one of :data:`SUFFIXES`), or a one-line DejavuError."""
    name = Path(path).name.lower()
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return suffix
    raise DejavuError(f"{path}: no writer for {Path(path).suffix or 'a name without a suffix'!r}; expected "
                      f"{', '.join(SUFFIXES)} (or a folder/ with --drive)")


def write_arrays(path: str | Path, arrays: dict[str, np.ndarray], up: str = DEFAULT_UP, sh_degree: int = 0) -> Path:
    """Write head-frame activated ``arrays`` to ``path`` in the format its suffix names, atomically."""

    path = Path(path)
    suffix = suffix_of(path)
    if sh_degree not in SH_DEGREES:
        raise DejavuError(f"--sh-degree {sh_degree}: expected 0 or 3")
    if sh_degree and suffix != ".ply":
        raise DejavuError(f"--sh-degree {sh_degree}: only .ply files carry zero higher-order coefficients, not {suffix}")
    if suffix == ".spz":
        # SPZ's specification fixes its frame (RUB, the head frame); --up does not apply.
        with atomic_path(path) as tmp:
            write_spz_file(tmp, arrays)
        return path
    framed = to_file_frame(arrays, up)
    payload = {".ply": lambda: ply_bytes(framed, up, sh_degree), ".splat": lambda: splat_bytes(framed),
               ".compressed.ply": lambda: compressed_ply_bytes(framed)}[suffix]()
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return path


def write_ply(path: str | Path, gaussians: Gaussians, index: int = 0, up: str = DEFAULT_UP, sh_degree: int = 0) -> Path:
    """Write batch element ``index`` of ``gaussians`` as a binary little-endian 3DGS .ply, atomically."""

    path = Path(path)
    data = ply_bytes(to_file_frame(gaussians_to_arrays(gaussians, index), up), up, sh_degree)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
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
                  device: str = "cpu", up: str = DEFAULT_UP, sh_degree: int = 0,
                  flame: str | None = None) -> tuple[Path, int]:
    """Write an avatar's Gaussians (neutral, or frame ``frame`` of a driving file) to ``out``; (path, N).

    ``out``'s suffix picks the format (:data:`SUFFIXES`); ``params``: any driving source
    :func:`dejavu.drive.sources.load_drive` reads; ``up``/``sh_degree``: see :func:`write_arrays`.
    """

    suffix_of(out)  # refuse an unknown suffix before any work
    dev = resolve_device(device)
    avatar = Avatar.load(avatar_dir)
    model = avatar.model(dev)
    head = model.head
    if params is None:
        at = HeadParams.zeros(1, head.n_expr)
    else:
        drive = load_drive(params, avatar.head, str(dev), flame=flame, option="--params")
        drive.check_components(head.n_expr, f"--params {params}")
        if not 0 <= frame < len(drive):
            raise DejavuError(f"--frame {frame}: out of range for {len(drive)} frame(s) in {params}")
        at = drive.params[frame]
    with torch.no_grad():
        g = model(**at.to(dev).kwargs())
    return write_arrays(out, gaussians_to_arrays(g), up=up, sh_degree=sh_degree), int(g.means.shape[1])


#: Name of the index a sequence export writes next to its frames.
SEQUENCE_INDEX = "index.json"


def export_sequence(avatar_dir: str | Path, drive_src: str | Path, out_dir: str | Path, fmt: str = ".ply",
                    device: str = "cpu", up: str = DEFAULT_UP, sh_degree: int = 0, max_frames: int | None = None,
                    flame: str | None = None, chunk: int = 8, progress: bool = True) -> dict:
    """One file per frame of ``drive_src`` in ``out_dir`` (``frame_00000<fmt>``, ...) and ``index.json``.

    The index: ``{"fps", "frames", "files", "format", "up", "frame_convention", "gaussians"}``; written
    last, so a folder with an index is complete. A folder that already has one is refused.
    Returns the index (with ``"index"``: its path).
    """
    from tqdm.auto import tqdm


    out_dir = Path(out_dir)
    fmt = fmt if fmt.startswith(".") else f".{fmt}"
    suffix_of(f"frame{fmt}")
    if (out_dir / SEQUENCE_INDEX).exists():
        raise DejavuError(f"{out_dir}: already holds an exported sequence ({SEQUENCE_INDEX}); choose another folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise DejavuError(f"{out_dir}: exists and is not a folder")
    dev = resolve_device(device)
    avatar = Avatar.load(avatar_dir)
    model = avatar.model(dev)
    head = model.head
    drive = load_drive(drive_src, avatar.head, str(dev), progress, flame=flame)
    if max_frames:
        drive = drive.first(max_frames)
    drive.check_components(head.n_expr, f"--drive {drive_src}")
    T = len(drive)
    files = [f"frame_{t:05d}{fmt}" for t in range(T)]
    n = 0
    with tqdm(total=T, disable=not progress, desc="export", unit="frame") as bar, torch.no_grad():
        for s in range(0, T, chunk):
            sl = slice(s, min(s + chunk, T))
            g = model(**drive.params[sl].to(dev).kwargs())
            for i in range(sl.stop - sl.start):
                write_arrays(out_dir / files[s + i], gaussians_to_arrays(g, i), up=up, sh_degree=sh_degree)
            n = int(g.means.shape[1])
            bar.update(sl.stop - sl.start)
    index = {"fps": drive.fps, "frames": T, "files": files, "format": fmt, "gaussians": n,
             "up": "y" if fmt == ".spz" else up, "frame_convention": FRAME_TEXT["y" if fmt == ".spz" else up]}
    write_json(out_dir / SEQUENCE_INDEX, index)
    return {**index, "index": str(out_dir / SEQUENCE_INDEX)}
