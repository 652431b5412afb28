"""Driving-file fixtures: writers of every format, an ARKit-named stand-in head, a fake FLAME with landmarks."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from dejavu.drive.arkit import ARKIT_NAMES
from tests.head.test_flame import chumpy_stub  # noqa: F401,F811  (a fixture: FLAME pickles name chumpy.ch.Ch)

EYE_NAMES = ("LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll")


def live_link_csv(path, weights: np.ndarray, fps: int = 60, head: np.ndarray | None = None,
                  eyes: np.ndarray | None = None, order: list[str] | None = None, extra: bool = False,
                  start: str = "15:03:19", tc_rate: int | None = None) -> None:
    """A Live Link Face CSV captured at ``fps``: Timecode HH:MM:SS:FF.fff at ``tc_rate`` (default ``fps``),
    BlendShapeCount, then named columns in ``order``."""
    T = len(weights)
    cols = {("".join([n[0].upper(), n[1:]])): weights[:, i] for i, n in enumerate(ARKIT_NAMES)}
    T0 = sum(int(x) * m for x, m in zip(start.split(":"), (3600, 60, 1)))
    if head is not None:
        cols.update(zip(("HeadYaw", "HeadPitch", "HeadRoll"), head.T))
    if eyes is not None:
        cols.update(zip(EYE_NAMES, eyes.T))
    if extra:
        cols["SomethingElse"] = np.full(T, 7.0)
    names = order or list(cols)
    lines = ["Timecode,BlendShapeCount," + ",".join(names)]
    rate = tc_rate or fps
    for t in range(T):
        frame = t * rate / fps  # timecode frames (with a sub-frame fraction when the capture is faster)
        s, f = divmod(frame, rate)
        tot = T0 + int(s)
        tc = f"{tot // 3600:02d}:{tot // 60 % 60:02d}:{tot % 60:02d}:{int(f):02d}.{round((f % 1) * 1000):03d}"
        lines.append(tc + f",{len(names)}," + ",".join(f"{cols[n][t]:.6f}" for n in names))
    path.write_text("\n".join(lines) + "\n")


def blendshape_json(path, weights: np.ndarray, names=ARKIT_NAMES, fps: float = 30.0, times: bool = True) -> None:
    """LAM audio-to-expression layout."""
    frames = [{"weights": w.tolist(), **({"time": i / fps} if times else {})} for i, w in enumerate(weights)]
    path.write_text(json.dumps({"names": list(names), "metadata": {"fps": fps}, "frames": frames}))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def arkit_head():
    """The procedural head with 52 ARKit-named smooth units in a shuffled order (a fast built-in stand-in)."""
    from dejavu.head import HeadModel, load_head_assets

    base = load_head_assets("procedural")
    rng = np.random.default_rng(1)
    v = base.v_template
    freqs = rng.normal(size=(52, 3, 3)) * 8
    phase = rng.uniform(0, 2 * np.pi, size=(52, 3))
    dirs = np.stack([0.004 * np.sin(v @ freqs[k].T + phase[k]) for k in range(52)], -1).astype(np.float32)
    order = rng.permutation(52)
    assets = dataclasses.replace(base, name="arkit-standin", exprdirs=dirs, expr_names=[ARKIT_NAMES[i] for i in order])
    return HeadModel(assets)


@pytest.fixture
def fake_flame_dir(tmp_path, monkeypatch, chumpy_stub):  # noqa: F811
    """A fake FLAME folder (tests/head's pickle format) with a 478-point MediaPipe embedding on random faces."""
    from tests.head.test_flame import _fake_mesh, _write

    folder = tmp_path / "flame"
    folder.mkdir()
    _write(folder, chumpy_stub)
    n_faces = len(_fake_mesh()[3])
    rng = np.random.default_rng(2)
    bary = rng.dirichlet(np.ones(3), size=478)
    np.savez(folder / "mediapipe_landmark_embedding.npz", lmk_face_idx=rng.integers(0, n_faces, 478),
             lmk_b_coords=bary, landmark_indices=np.arange(478))
    monkeypatch.setenv("DEJAVU_CACHE", str(tmp_path / "cache"))
    return folder


@pytest.fixture
def fake_flame_head(fake_flame_dir):
    from dejavu.head import load_head

    return load_head(f"flame:{fake_flame_dir}")
