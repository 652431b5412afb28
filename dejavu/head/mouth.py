"""The mouth-interior patch (paper section 3.2): extra vertices that are linear combinations of lip vertices.

The patch is a grid of ``cols x rows`` vertices. Its top row follows the inner upper-lip line, its
bottom row the inner lower-lip line, and its middle row the straight line between the two mouth
corners pushed ``depth`` metres back (-Z, into the head). Rows in between interpolate linearly.
Every patch vertex is ``W @ vertices + offset`` with rows of ``W`` summing to 1, so identity and
expression blendshapes, skinning weights and pose correctives are combined with the same ``W``
(the patch follows the lips, the jaw and expressions for free). Used by the procedural and FLAME heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class MouthPatch:
    """A patch grid as linear combinations of existing vertices.

    weights: (M, V) float64, rows sum to 1 (M = cols * rows, row-major: row 0 = upper lip).
    offset:  (M, 3) float64 metres, added to ``weights @ v_template`` only (rest pose).
    faces:   (Fm, 3) int64 indices into the M patch vertices, counter-clockwise seen from +Z.
    uv:      (M, 2) float64 UVs inside ``uv_box``.
    """

    weights: np.ndarray
    offset: np.ndarray
    faces: np.ndarray
    uv: np.ndarray


def _polyline_weights(indices: np.ndarray, points: np.ndarray, n: int, n_verts: int) -> np.ndarray:
    """(n, V) weights sampling the polyline through ``points`` (vertices ``indices``) at n arc-length-even spots."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    arc = arc / max(arc[-1], 1e-12)
    out = np.zeros((n, n_verts))
    for k, t in enumerate(np.linspace(0.0, 1.0, n)):
        i = int(np.clip(np.searchsorted(arc, t, side="right") - 1, 0, len(arc) - 2))
        a = (t - arc[i]) / max(arc[i + 1] - arc[i], 1e-12)
        out[k, indices[i]] += 1.0 - a
        out[k, indices[i + 1]] += a
    return out


def build_mouth_patch(
    v_template: np.ndarray,
    upper_lip: np.ndarray,
    lower_lip: np.ndarray,
    cols: int,
    rows: int,
    uv_box: tuple[float, float, float, float],
    depth: float = 0.02,
) -> MouthPatch:
    """Build the patch.

    Args:
        v_template: (V, 3) metres.
        upper_lip, lower_lip: vertex indices of the inner lip lines, each ordered from the subject's
            right mouth corner (-X) to the left one (+X); their first/last entries are the corners.
        cols, rows: patch grid size (rows odd puts a row exactly on the corner line).
        uv_box: (u0, v0, u1, v1) the patch's UV rectangle; row 0 (upper lip) at v1.
        depth: how far back (-Z, metres) the corner line is pushed.
    """
    V = len(v_template)
    upper_lip, lower_lip = np.asarray(upper_lip), np.asarray(lower_lip)
    up = _polyline_weights(upper_lip, v_template[upper_lip], cols, V)  # (cols, V)
    lo = _polyline_weights(lower_lip, v_template[lower_lip], cols, V)
    corner_r = 0.5 * (np.eye(V)[upper_lip[0]] + np.eye(V)[lower_lip[0]])
    corner_l = 0.5 * (np.eye(V)[upper_lip[-1]] + np.eye(V)[lower_lip[-1]])
    s = np.linspace(0.0, 1.0, cols)[:, None]
    mid = (1 - s) * corner_r + s * corner_l  # (cols, V)
    back = np.array([0.0, 0.0, -depth])
    weights, offset = [], []
    for t in np.linspace(0.0, 1.0, rows):
        if t <= 0.5:
            a = 2 * t
            weights.append((1 - a) * up + a * mid)
        else:
            a = 2 * t - 1
            weights.append((1 - a) * mid + a * lo)
        offset.append(np.tile(back * (1 - abs(2 * t - 1)), (cols, 1)))
    W = np.concatenate(weights)
    off = np.concatenate(offset)
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    a = (r * cols + c).ravel()
    b, d, e = a + 1, a + cols, a + cols + 1
    # Seen from +Z with +X right and row 0 on top: a (top-left), b (top-right), d (bottom-left).
    faces = np.concatenate([np.stack([a, d, b], 1), np.stack([b, d, e], 1)])
    u0, v0, u1, v1 = uv_box
    uu, vv = np.meshgrid(np.linspace(u0, u1, cols), np.linspace(v1, v0, rows))
    return MouthPatch(W, off, faces.astype(np.int64), np.stack([uu.ravel(), vv.ravel()], 1))


def extend_rows(per_vertex: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Append the patch's rows to a per-vertex array (V, ...) -> (V + M, ...), combined with ``weights``."""
    flat = per_vertex.reshape(len(per_vertex), -1)
    return np.concatenate([flat, weights @ flat]).reshape(len(per_vertex) + len(weights), *per_vertex.shape[1:])
