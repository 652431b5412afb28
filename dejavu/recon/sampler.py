"""Which samples a training step uses: an epoch-shuffled identity order split over the ranks.

The global batch of a step is the next ``G`` identities of an order that is reshuffled every epoch
(``seed``, ``stream`` and the epoch number seed the permutation), each repeated ``views`` times with
its input and target views drawn from a generator seeded by the batch's position. Everything depends
on (seed, stream, position) only, never on the rank or on earlier draws, so:

- every rank computes the same global plan and takes its own contiguous part (rank r of W: identities
  ``[r G/W, (r+1) G/W)``); over an epoch the ranks read disjoint identities, like
  ``torch.utils.data.DistributedSampler`` with ``shuffle=True`` and ``set_epoch``;
- W processes with per-rank batch b see exactly the samples of 1 process with batch W b, in order;
- resuming needs only the position (identities consumed), also after a change of world size.

Letters: K identities in the set, G identities in the global batch, V views per identity in a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BatchPlan:
    """Samples of a batch, all (B,) int64: identity ``k``, input view ``v_in``, target view ``v_out``,
    identity label within the batch ``group`` (samples of one identity share it)."""

    k: np.ndarray
    v_in: np.ndarray
    v_out: np.ndarray
    group: np.ndarray

    def __len__(self) -> int:
        return len(self.k)


def epoch_order(n: int, epoch: int, seed: int, stream: int) -> np.ndarray:
    """(n,) permutation of the identities for ``epoch`` of ``stream`` (e.g. 0 synthetic, 1 real)."""
    return np.random.default_rng([seed, stream, epoch, 0x5A3]).permutation(n)


def plan_batch(n_views: np.ndarray, identities: int, views: int, position: int, seed: int, stream: int,
               pair_views: bool = True) -> BatchPlan:
    """The global batch at ``position`` (identities consumed so far): ``identities`` (G) x ``views`` samples.

    Args:
        n_views: (K,) valid views per identity. identities: G. views: V samples per identity.
        position: index of the batch's first identity in the endless sequence of epochs.
        pair_views: draw the target view independently of the input view (else target = input).
    """
    K = len(n_views)
    pos = position + np.arange(identities)
    epochs = pos // K
    ids = np.empty(identities, np.int64)
    for e in np.unique(epochs):
        sel = epochs == e
        ids[sel] = epoch_order(K, int(e), seed, stream)[pos[sel] % K]
    k = np.repeat(ids, views)
    rng = np.random.default_rng([seed, stream, position, 0x71E])
    nv = n_views[k]
    v_in = (rng.random(len(k)) * nv).astype(np.int64)
    v_out = (rng.random(len(k)) * nv).astype(np.int64) if pair_views else v_in
    return BatchPlan(k, v_in, v_out, np.repeat(np.arange(identities), views))


def rank_part(plan: BatchPlan, rank: int, world: int) -> BatchPlan:
    """Rank ``rank``'s contiguous share (1/world of the identities, with all their views) of ``plan``."""
    G = int(plan.group.max()) + 1 if len(plan) else 0
    if G % world:
        raise ValueError(f"a batch of {G} identities does not split over {world} ranks")
    lo, hi = rank * G // world, (rank + 1) * G // world
    sel = (plan.group >= lo) & (plan.group < hi)
    return BatchPlan(plan.k[sel], plan.v_in[sel], plan.v_out[sel], plan.group[sel] - lo)
