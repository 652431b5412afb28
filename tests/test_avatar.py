"""Avatar format: save/load round trip, offsets composition, clear errors on bad files."""

from __future__ import annotations

import json

import pytest
import torch

from dejavu.avatar import JSON_NAME, TENSORS_NAME, Avatar
from dejavu.errors import DejavuError
from dejavu.model.blend import BlendScheme, fit_pca_basis


def _avatar(S: int = 8, K: int = 3, Ne: int = 6) -> Avatar:
    """An avatar on the procedural head (6 identity and 6 expression components, 1,539 vertices)."""
    g = torch.Generator().manual_seed(0)
    scheme = fit_pca_basis(torch.rand(20, Ne, generator=g), k=K)
    return Avatar(head="procedural", uv_size=S, shape=torch.randn(6, generator=g),
                  mean_offsets=torch.randn(13, S, S, generator=g), global_delta=torch.randn(13, S, S, generator=g),
                  blendmaps=torch.randn(K, 13, S, S, generator=g), blend=scheme,
                  settings={"resolution": 64}, training={"steps": 3, "seconds": 1.5},
                  vertex_offsets=torch.randn(1539, 3, generator=g) * 1e-3)


def test_round_trip(tmp_path):
    a = _avatar()
    a.save(tmp_path / "av")
    b = Avatar.load(tmp_path / "av")
    for name in ("shape", "vertex_offsets", "mean_offsets", "global_delta", "blendmaps"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert b.blend.kind == "pca_softmax" and torch.equal(a.blend.basis, b.blend.basis)
    assert b.settings == {"resolution": 64} and b.training["steps"] == 3 and b.head == "procedural"
    expr = torch.rand(4, 6)
    assert torch.allclose(a.model().offsets(expr), b.model().offsets(expr))
    ga, gb = a.model()(expr), b.model()(expr)
    assert torch.equal(ga.means, gb.means) and torch.equal(ga.colors, gb.colors)


def test_offsets_stages():
    a = _avatar()
    m = a.model()
    expr = torch.rand(2, 6)
    w = a.blend.weights(expr)
    full = m.offsets(expr)
    expected = a.mean_offsets + torch.einsum("bk,kchw->bchw", w, a.blendmaps)
    assert full.shape == (2, 13, 8, 8) and torch.allclose(full, expected, atol=1e-6)
    assert torch.allclose(m.offsets(expr, "global"), (a.mean_offsets + a.global_delta).expand(2, -1, -1, -1))
    assert torch.equal(m.offsets(expr, "mean")[1], a.mean_offsets)
    a.blendmaps = None
    m = a.model()
    assert torch.allclose(m.offsets(expr), m.offsets(expr, "global"))


def test_minimal_avatar_without_deltas(tmp_path):
    a = Avatar(head="procedural", uv_size=4, shape=torch.zeros(2), mean_offsets=torch.zeros(13, 4, 4))
    a.save(tmp_path)
    b = Avatar.load(tmp_path)
    assert b.global_delta is None and b.blendmaps is None and b.stage == "mean" and b.vertex_offsets is None


def test_vertex_offsets_move_the_mesh_and_must_match_the_head(procedural_head):
    head = procedural_head
    offsets = torch.zeros(head.n_verts, 3)
    offsets[:, 0] = 0.002
    a = Avatar(head="procedural", uv_size=4, shape=torch.zeros(head.n_shape), mean_offsets=torch.zeros(13, 4, 4),
               vertex_offsets=offsets)
    plain = Avatar(head="procedural", uv_size=4, shape=torch.zeros(head.n_shape), mean_offsets=torch.zeros(13, 4, 4))
    expr = torch.zeros(1, head.n_expr)
    assert torch.allclose(a.model().vertices(expr) - plain.model().vertices(expr), offsets[None], atol=1e-6)
    a.vertex_offsets = torch.zeros(head.n_verts + 1, 3)
    with pytest.raises(DejavuError, match="vertex_offsets has"):
        a.model()


def test_wrong_shape_is_rejected():
    with pytest.raises(DejavuError, match="mean_offsets"):
        Avatar(head="procedural", uv_size=4, shape=torch.zeros(2), mean_offsets=torch.zeros(13, 5, 5))
    with pytest.raises(DejavuError, match="blendmaps"):
        Avatar(head="procedural", uv_size=4, shape=torch.zeros(2), mean_offsets=torch.zeros(13, 4, 4),
               blendmaps=torch.zeros(2, 13, 4, 4), blend=BlendScheme(k=3))


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DejavuError, match="no such avatar directory"):
        Avatar.load(tmp_path / "nope")
    _avatar().save(tmp_path)
    (tmp_path / TENSORS_NAME).write_bytes(b"garbage")
    with pytest.raises(DejavuError, match="do not match"):
        Avatar.load(tmp_path)
    meta = json.loads((tmp_path / JSON_NAME).read_text())
    meta.pop("tensors_sha256")
    (tmp_path / JSON_NAME).write_text(json.dumps(meta))
    with pytest.raises(DejavuError, match="safetensors"):
        Avatar.load(tmp_path)
    (tmp_path / JSON_NAME).write_text("{not json")
    with pytest.raises(DejavuError, match="not valid JSON"):
        Avatar.load(tmp_path)
    (tmp_path / JSON_NAME).unlink()
    with pytest.raises(DejavuError, match="missing"):
        Avatar.load(tmp_path)


def test_newer_version_is_rejected(tmp_path):
    _avatar().save(tmp_path)
    meta = json.loads((tmp_path / JSON_NAME).read_text())
    meta["version"] = 99
    (tmp_path / JSON_NAME).write_text(json.dumps(meta))
    with pytest.raises(DejavuError, match="newer"):
        Avatar.load(tmp_path)
