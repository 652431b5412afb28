"""HeadParams: the one container of per-frame driving parameters."""

import numpy as np
import pytest
import torch

from dejavu.errors import DejavuError
from dejavu.head.params import HeadParams


def test_of_fills_missing_joints_and_converts_arrays():
    p = HeadParams.of(np.ones((4, 7), np.float64), jaw=torch.full((4, 3), 0.1, dtype=torch.float64))
    assert len(p) == 4 and p.n_expr == 7
    assert all(t.dtype == torch.float32 for t in p.kwargs().values())
    assert p.eyes.shape == (4, 6) and p.eyes.abs().sum() == 0
    assert torch.allclose(p.jaw, torch.full((4, 3), 0.1))


def test_frames_slice_and_join_together():
    p = HeadParams(torch.arange(12.0).reshape(4, 3), torch.rand(4, 3), torch.rand(4, 6))
    one = p[2]
    assert len(one) == 1 and torch.equal(one.expression, p.expression[2:3]) and torch.equal(one.eyes, p.eyes[2:3])
    assert torch.equal(p[-1].jaw, p.jaw[3:])
    picked = p[torch.tensor([3, 0])]
    assert torch.equal(picked.jaw, p.jaw[[3, 0]])
    back = HeadParams.cat([p[:2], p[2:]])
    assert all(torch.equal(a, b) for a, b in zip(back.kwargs().values(), p.kwargs().values()))
    assert set(p.numpy()) == {"expression", "jaw", "eyes"} and p.numpy()["eyes"].dtype == np.float32


def test_mismatched_frames_are_refused_in_one_line():
    with pytest.raises(DejavuError, match=r"expected \(T, Ne\), \(T, 3\), \(T, 6\)"):
        HeadParams(torch.zeros(4, 5), torch.zeros(3, 3), torch.zeros(4, 6))
    with pytest.raises(DejavuError):
        HeadParams(torch.zeros(4, 5), torch.zeros(4, 3), torch.zeros(4, 3))


def test_drives_a_head_like_its_three_arrays(procedural_head):
    p = HeadParams.of(torch.randn(2, procedural_head.n_expr) * 0.3, torch.tensor([[0.2, 0, 0], [0.0, 0.1, 0]]))
    shape = torch.zeros(procedural_head.n_shape)
    assert torch.equal(procedural_head(shape, **p.kwargs()),
                       procedural_head(shape, expression=p.expression, jaw=p.jaw, eyes=p.eyes))
