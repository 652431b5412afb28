"""Every export format read back by an independent reader, within the format's quantisation.

Readers: gsply (PLY, compressed PLY, SPZ), PlayCanvas's splat-transform from npm (all four, converted to
CSV; installed by ``make test-oracles``), and our own .ply/.splat readers. Rotations are compared as
Gaussian axes up to sign (a quaternion and its product with a 180-degree turn about an axis describe
the same ellipsoid; converters pick either).
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dejavu.errors import DejavuError
from dejavu.export import ply_to_activated, read_ply, suffix_of, write_arrays
from dejavu.splat_formats import FRAME_TEXT, read_splat, read_with_gsply, to_file_frame

ORACLE = Path(__file__).resolve().parent / "oracles" / "node_modules" / ".bin" / "splat-transform"

#: Largest error allowed per format: position mm, relative scale, opacity, colour, axis angle (degrees).
TOLERANCE = {
    ".ply": dict(pos_mm=1e-4, scale_rel=1e-5, opacity=1e-5, color=1e-5, axes_deg=0.1),
    ".splat": dict(pos_mm=1e-4, scale_rel=1e-5, opacity=0.5 / 255 + 1e-6, color=0.5 / 255 + 1e-6, axes_deg=2.0),
    ".spz": dict(pos_mm=0.5 / 4.096 + 1e-3, scale_rel=np.exp(1 / 32) - 1 + 1e-4, opacity=0.5 / 255 + 1e-6,
                 color=0.5 * 0.2820948 / (0.15 * 255) + 1e-4, axes_deg=0.5),
    ".compressed.ply": dict(pos_mm=None, scale_rel=0.01, opacity=0.5 / 255 + 1e-6, color=0.5 / 255 + 1e-4,
                            axes_deg=0.5),
}


def _arrays(N=600, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(N, 4))
    return {"means": (rng.normal(size=(N, 3)) * 0.1).astype(np.float32),
            "quats": (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32),
            "scales": np.exp(rng.uniform(np.log(2e-4), np.log(2e-2), (N, 3))).astype(np.float32),
            "opacities": rng.uniform(0.02, 0.98, N).astype(np.float32),
            "colors": rng.uniform(0.02, 0.98, (N, 3)).astype(np.float32)}


def compressed_ply_pos_tol_mm(means: np.ndarray) -> float:
    """PlayCanvas chunks of 256 keep 10 bits at least per axis over the chunk's extent (<= the whole extent)."""
    return 1e3 * float((means.max(0) - means.min(0)).max()) / 1023 * 0.5 + 1e-3


def _rotmats(q):
    w, x, y, z = q.T.astype(np.float64)
    return np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                     2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                     2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(-1, 3, 3)


def errors(ref: dict, got: dict) -> dict:
    """Worst-case differences between two sets of activated arrays, matched by nearest position."""
    from scipy.spatial import cKDTree

    assert len(got["means"]) == len(ref["means"])
    idx = cKDTree(ref["means"]).query(got["means"])[1]
    ref = {k: v[idx] for k, v in ref.items()}
    cos = np.abs(np.einsum("nij,nij->nj", _rotmats(ref["quats"]), _rotmats(got["quats"]))).clip(0, 1)
    return {"pos_mm": 1e3 * float(np.abs(ref["means"] - got["means"]).max()),
            "scale_rel": float(np.abs(got["scales"] / ref["scales"] - 1).max()),
            "opacity": float(np.abs(ref["opacities"] - got["opacities"]).max()),
            "color": float(np.abs(ref["colors"] - got["colors"]).max()),
            "axes_deg": float(np.degrees(np.arccos(cos)).max())}


def _check(fmt: str, ref: dict, got: dict) -> None:
    tol = dict(TOLERANCE[fmt])
    if tol["pos_mm"] is None:
        tol["pos_mm"] = compressed_ply_pos_tol_mm(ref["means"])
    err = errors(ref, got)
    bad = {k: (round(v, 6), tol[k]) for k, v in err.items() if v > tol[k]}
    assert not bad, f"{fmt}: over tolerance {bad}"


def splat_transform_read(path: Path, tmp: Path) -> dict:
    """Convert ``path`` with splat-transform to CSV and read it as activated arrays (PLY storage columns)."""
    if not ORACLE.exists():
        pytest.skip("splat-transform is not installed (make test-oracles; needs npm)")
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    out = tmp / (path.name + ".csv")
    subprocess.run([str(ORACLE), "-q", "-w", str(path), str(out)], check=True, capture_output=True, timeout=120)
    header, body = out.read_text().split("\n", 1)
    data = np.loadtxt(io.StringIO(body), delimiter=",", ndmin=2)
    return ply_to_activated({n: data[:, i].astype(np.float32) for i, n in enumerate(header.split(","))})


FORMATS = [".ply", ".splat", ".spz", ".compressed.ply"]


@pytest.mark.parametrize("up", ["y", "-y"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_gsply_and_own_readers(tmp_path, fmt, up):
    a = _arrays()
    path = write_arrays(tmp_path / f"a{fmt}", a, up=up)
    # .spz stores its own +Y-up frame whatever --up says; the others store the frame asked for.
    want = a if fmt == ".spz" else to_file_frame(a, up)
    got = read_splat(path) if fmt == ".splat" else read_with_gsply(path)
    _check(fmt, want, got)
    if fmt == ".ply":
        _check(fmt, want, ply_to_activated(read_ply(path)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_splat_transform(tmp_path, fmt):
    a = _arrays(seed=1)
    path = write_arrays(tmp_path / f"a{fmt}", a, up="-y")
    # splat-transform reads .ply/.splat as stored and converts .spz (RUB) to the PLY convention, -Y up:
    # every format must come out the same.
    _check(fmt, to_file_frame(a, "-y"), splat_transform_read(path, tmp_path))


def test_minus_y_frame_is_a_rotation_about_x():
    a = _arrays(N=20)
    b = to_file_frame(a, "-y")
    F = np.diag([1.0, -1.0, -1.0])
    np.testing.assert_allclose(b["means"], a["means"] @ F.T, atol=1e-7)
    np.testing.assert_allclose(_rotmats(b["quats"]), F @ _rotmats(a["quats"]), atol=1e-6)
    assert to_file_frame(a, "y") is a


def test_ply_header_states_the_frame_and_sh_degree_3(tmp_path):
    a = _arrays(N=9)
    path = write_arrays(tmp_path / "a.ply", a, up="-y", sh_degree=3)
    raw = path.read_bytes()
    header = raw[: raw.index(b"end_header\n")].decode()
    assert f"comment {FRAME_TEXT['-y']}\n" in header
    props = read_ply(path)
    assert [f"f_rest_{i}" for i in range(45)] == [n for n in props if n.startswith("f_rest")]
    assert list(props).index("f_rest_0") == list(props).index("f_dc_2") + 1
    assert all(np.all(props[f"f_rest_{i}"] == 0) for i in range(45))
    got = read_with_gsply(path)
    _check(".ply", to_file_frame(a, "-y"), got)


def test_unknown_suffix_and_bad_options_are_refused(tmp_path):
    with pytest.raises(DejavuError, match=r"x\.obj: no writer for '\.obj'; expected \.compressed\.ply, \.ply"):
        suffix_of(tmp_path / "x.obj")
    with pytest.raises(DejavuError, match="no writer"):
        write_arrays(tmp_path / "noext", _arrays(N=3))
    with pytest.raises(DejavuError, match="only .ply files"):
        write_arrays(tmp_path / "a.splat", _arrays(N=3), sh_degree=3)
    with pytest.raises(DejavuError, match="--up 'z'"):
        write_arrays(tmp_path / "a.ply", _arrays(N=3), up="z")
    assert not list(tmp_path.iterdir())
    assert suffix_of("A.COMPRESSED.PLY") == ".compressed.ply" and suffix_of("a.ply") == ".ply"
