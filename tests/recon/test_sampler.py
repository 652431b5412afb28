"""The training sampler: epoch order, per-rank parts, independence of the rank count."""

from __future__ import annotations

import numpy as np
import pytest

from dejavu.recon.sampler import plan_batch, rank_part


def test_ranks_split_the_global_batch_and_together_equal_one_process():
    n_views = np.array([2, 3, 1, 4, 2, 2, 3])
    one = plan_batch(n_views, 4, 3, position=5, seed=0, stream=0)
    parts = [rank_part(one, r, 2) for r in range(2)]
    assert np.array_equal(np.concatenate([p.k for p in parts]), one.k)
    assert np.array_equal(np.concatenate([p.v_in for p in parts]), one.v_in)
    assert np.array_equal(np.concatenate([p.v_out for p in parts]), one.v_out)
    # groups restart at 0 on each rank; each rank holds whole identities (all their views)
    assert all(np.array_equal(p.group, np.repeat(np.arange(2), 3)) for p in parts)
    assert (one.v_in < n_views[one.k]).all() and (one.v_out < n_views[one.k]).all()
    with pytest.raises(ValueError, match="does not split"):
        rank_part(one, 0, 3)


def test_each_epoch_visits_every_identity_once_in_a_new_order():
    n_views = np.full(10, 2)
    order = [plan_batch(n_views, 2, 1, position=p, seed=3, stream=0).k for p in range(0, 30, 2)]
    epochs = np.concatenate(order).reshape(3, 10)
    assert all(sorted(e) == list(range(10)) for e in epochs)
    assert not np.array_equal(epochs[0], epochs[1])
    # a batch across an epoch boundary takes the end of one order and the start of the next
    across = plan_batch(n_views, 4, 1, position=8, seed=3, stream=0).k
    assert np.array_equal(across, np.concatenate([epochs[0][8:], epochs[1][:2]]))
    # streams (synthetic, real) and seeds give other orders
    assert not np.array_equal(plan_batch(n_views, 10, 1, 0, seed=3, stream=1).k, epochs[0])


def test_single_view_plans_target_their_input():
    plan = plan_batch(np.full(5, 4), 3, 1, position=0, seed=0, stream=1, pair_views=False)
    assert np.array_equal(plan.v_in, plan.v_out)
