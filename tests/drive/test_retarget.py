"""ARKit <-> FLAME retargeting on the fake FLAME files of tests/head and an ARKit-named stand-in head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dejavu.drive.retarget import (RetargetConfig, fit_arkit_to_flame, fit_flame_to_arkit, landmark_basis,

                                   retarget_maps, similarity)
from dejavu.errors import DejavuError


def test_landmark_basis_is_the_head_forward(procedural_head):
    lm0, D, J = landmark_basis(procedural_head, 0.05)
    e = torch.zeros(1, procedural_head.n_expr, dtype=torch.float64)
    e[0, 2] = 1.0
    h = procedural_head.double()
    want = (h.landmarks(h(expression=e)) - h.landmarks(h(batch_size=1)))[0].numpy()
    procedural_head.float()
    np.testing.assert_allclose(D[2], want, atol=1e-12)
    assert lm0.shape == (478, 3) and J.shape == (478, 3)


def test_similarity_recovers_a_known_transform(rng):
    from scipy.spatial.transform import Rotation

    a = rng.normal(size=(50, 3))
    R = Rotation.from_rotvec([0.1, -0.2, 0.3]).as_matrix()
    b = 1.3 * a @ R.T + [0.1, 0.2, 0.3]
    s, R_fit = similarity(a, b, np.ones(50))
    assert abs(s - 1.3) < 1e-9 and np.allclose(R_fit, R, atol=1e-9)


def test_self_retarget_is_identity(fake_flame_head):
    """A head retargeted onto itself: coefficients come back unchanged, no landmark error."""
    M, err, motion = fit_arkit_to_flame(fake_flame_head, fake_flame_head, RetargetConfig(ridge=0.0))
    n = fake_flame_head.n_expr
    np.testing.assert_allclose(M[:, :n], np.eye(n), atol=1e-4)
    assert np.abs(M[:, n]).max() < 1e-4 and err.max() < 1e-4 * motion.max()


def test_arkit_to_flame_is_the_least_squares_optimum(arkit_head, fake_flame_head):
    M, err, motion = fit_arkit_to_flame(arkit_head, fake_flame_head, RetargetConfig(ridge=0.0))
    assert M.shape == (52, fake_flame_head.n_expr + 1)
    assert np.all(err <= motion + 1e-9)  # never worse than leaving the FLAME head neutral
    # Reference twin: a direct lstsq per unit on the same (weighted, aligned) system.
    w = (arkit_head.landmark_weight * fake_flame_head.landmark_weight).double().numpy()
    a0, Da, _ = landmark_basis(arkit_head)
    f0, Df, Jf = landmark_basis(fake_flame_head)
    s, R = similarity(a0, f0, w)
    A = (np.concatenate([Df, Jf[None]]) * np.sqrt(w)[None, :, None]).reshape(len(Df) + 1, -1).T
    for k in (0, 17, 51):
        b = (s * Da[k] @ R.T * np.sqrt(w)[:, None]).reshape(-1)
        ref = np.linalg.lstsq(A, b, rcond=None)[0]
        np.testing.assert_allclose(A @ M[k], A @ ref, atol=1e-7)


def test_flame_to_arkit_is_non_negative_and_better_than_nothing(arkit_head, fake_flame_head):
    P, N, err, motion = fit_flame_to_arkit(fake_flame_head, arkit_head)
    assert P.shape == N.shape == (fake_flame_head.n_expr, 52)
    assert P.min() >= 0 and N.min() >= 0
    jaw_open = arkit_head.expr_names.index("jawOpen")
    assert np.all(P[:, jaw_open] == 0) and np.all(N[:, jaw_open] == 0)
    assert np.all(err <= motion + 1e-9)


def test_maps_are_cached_by_both_heads(arkit_head, fake_flame_head, monkeypatch):
    from dejavu.drive import retarget
    from dejavu.io import cache_dir

    maps = retarget_maps(arkit_head, fake_flame_head)
    files = list((cache_dir() / "retarget").glob("arkit-flame-*.npz"))
    assert len(files) == 1 and fake_flame_head.assets.fingerprint() in files[0].name
    monkeypatch.setattr(retarget, "fit_arkit_to_flame", lambda *a, **k: pytest.fail("refitted"))
    again = retarget_maps(arkit_head, fake_flame_head)
    np.testing.assert_array_equal(again.arkit_to_flame, maps.arkit_to_flame)
    exp, jaw = maps.arkit_to_flame_params(np.eye(52, dtype=np.float32)[:3])
    assert exp.shape == (3, fake_flame_head.n_expr) and jaw.shape == (3, 3) and np.all(jaw[:, 1:] == 0)
    w = maps.flame_to_arkit_weights(np.random.default_rng(0).normal(size=(4, 50)))
    assert w.shape == (4, 52) and w.min() >= 0 and w.max() <= 1
    s = maps.summary()
    assert s["arkit_to_flame"]["units"] > 0 and s["flame_to_arkit"]["median_relative_error"] <= 1.0


def test_no_landmark_embedding_is_refused(arkit_head, fake_flame_dir):
    from dejavu.head import load_head, load_head_assets

    (fake_flame_dir / "mediapipe_landmark_embedding.npz").unlink()
    load_head_assets.cache_clear()
    head = load_head(f"flame:{fake_flame_dir}")
    with pytest.raises(DejavuError, match="mediapipe_landmark_embedding.npz"):
        fit_arkit_to_flame(arkit_head, head)
    load_head_assets.cache_clear()


def test_bench_retarget_reports_accuracy(fake_flame_dir, capsys, monkeypatch):
    """`dejavu bench retarget` on the fake FLAME (the built-in head replaced by the stand-in for speed)."""
    import argparse

    from dejavu.bench import retarget as bench

    monkeypatch.setattr(bench, "load_head", _loader(fake_flame_dir))
    res = bench.run(argparse.Namespace(flame=str(fake_flame_dir)))
    assert res["arkit_to_flame"]["units"] > 0 and len(res["worst_arkit_units_mm"]) == 5
    assert "median landmark error" in capsys.readouterr().out


def _loader(fake_flame_dir):
    from dejavu.head import load_head as real

    def load(spec, device="cpu"):
        return _standin() if spec == "builtin" else real(spec, device)
    return load


def _standin():
    import dataclasses

    from dejavu.drive.arkit import ARKIT_NAMES
    from dejavu.head import HeadModel, load_head_assets

    base = load_head_assets("procedural")
    rng = np.random.default_rng(1)
    dirs = rng.normal(scale=1e-3, size=(len(base.v_template), 3, 52)).astype(np.float32)
    return HeadModel(dataclasses.replace(base, name="arkit-standin", exprdirs=dirs, expr_names=list(ARKIT_NAMES)))
