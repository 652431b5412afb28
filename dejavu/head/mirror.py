"""The left-right mirror of a head model's driving parameters.

A frame flipped left to right shows the mirror image of the person. For a head model that is symmetric
about its head frame's X = 0 plane (the built-in head is, to 1e-5 m; FLAME's template is, to the
millimetre), that mirror image is the same model driven by mirrored parameters: expression units of the
left side swapped with their right-side twins, the jaw and eyeballs turned the other way, the eyes
swapped. :func:`expression_mirror` gives the expression part as a matrix, :func:`mirror_params` applies
all of it (the cameras: :func:`dejavu.render.camera.mirror_cameras`). Personalization uses it to train on mirrored frames (:meth:`dejavu.personalize.frames.FrameSet.mirrored`).

Frame: head frame +X towards the subject's left (docs/CONVENTIONS.md), so the mirror is x -> -x.
Letters: V vertices, Ne expression components, T frames.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from dejavu.errors import DejavuError
from dejavu.head.params import HeadParams

#: The head frame's mirror, x -> -x (a reflection: determinant -1).
MIRROR = (-1.0, 1.0, 1.0)

#: A head whose template's mirror misses its nearest vertex by more than this share of the head's width is
#: not symmetric enough to mirror frames of.
SYMMETRY_TOLERANCE = 0.01

#: Largest relative residual of the expression basis against its mirror for the least-squares matrix.
EXPRESSION_TOLERANCE = 0.1

_SIDE = re.compile(r"(Left|Right|left|right|_L\b|_R\b)")
_SWAP = {"Left": "Right", "Right": "Left", "left": "right", "right": "left", "_L": "_R", "_R": "_L"}


def mirror_vertex_index(v_template: torch.Tensor, name: str = "head") -> torch.Tensor:
    """(V,) long: the vertex at each vertex's mirror position (x -> -x) of ``v_template`` (V, 3) metres.

    Raises DejavuError when some vertex's mirror lies farther from every vertex than
    :data:`SYMMETRY_TOLERANCE` of the template's width: the head ``name`` is not left-right symmetric."""
    v = v_template.detach().double().cpu()
    mirrored = v * v.new_tensor(MIRROR)
    index = torch.empty(len(v), dtype=torch.long)
    worst = 0.0
    for s in range(0, len(v), 4096):  # (4096, V) distances at a time: FLAME's 5023 vertices fit twice over
        d = torch.cdist(mirrored[s:s + 4096], v)
        best, index[s:s + 4096] = d.min(1)
        worst = max(worst, float(best.max()))
    width = float(v[:, 0].max() - v[:, 0].min())
    if worst > SYMMETRY_TOLERANCE * width:
        raise DejavuError(f"head {name}: not left-right symmetric (a mirrored vertex lies {worst * 1000:.1f} mm "
                          f"from the nearest vertex), so its frames cannot be mirrored")
    return index


def expression_mirror(names: list[str], exprdirs: torch.Tensor, v_template: torch.Tensor,
                      name: str = "head") -> torch.Tensor:
    """(Ne, Ne) float32 matrix P such that ``expression @ P`` drives the mirror image of ``expression`` (.., Ne).

    Units named in left/right pairs (ARKit's ``eyeBlinkLeft`` / ``eyeBlinkRight``, ``..._L`` / ``..._R``) swap,
    the others keep their place: a permutation. Otherwise (PCA components such as FLAME's) the least-squares
    solution of ``exprdirs @ P = mirror(exprdirs)`` with ``exprdirs`` (V, 3, Ne) metres per unit, the
    mirror taking each vertex's offset at its mirror vertex (:func:`mirror_vertex_index`) with x negated;
    raises DejavuError when that fits worse than :data:`EXPRESSION_TOLERANCE` (relative)."""
    n = exprdirs.shape[-1]
    pairs = _name_pairs(list(names)) if len(names) == n else None
    if pairs is not None:
        P = torch.zeros(n, n)
        P[torch.arange(n), torch.as_tensor(pairs)] = 1.0
        return P
    index = mirror_vertex_index(v_template, name)
    E = exprdirs.detach().double().cpu()
    target = (E[index] * E.new_tensor(MIRROR)[None, :, None]).reshape(-1, n)
    A = E.reshape(-1, n)
    P = torch.linalg.lstsq(A, target).solution
    residual = float((A @ P - target).norm() / target.norm().clamp_min(1e-12))
    if residual > EXPRESSION_TOLERANCE:
        raise DejavuError(f"head {name}: its expression components have no left-right mirror (least-squares "
                          f"residual {residual:.2f}), so its frames cannot be mirrored")
    return P.float()


def _name_pairs(names: list[str]) -> list[int] | None:
    """Each unit's mirror twin's index by name (itself for units of no side), or None when some unit named for a
    side has no twin."""
    where = {n: i for i, n in enumerate(names)}
    out = []
    for n in names:
        twin = _SIDE.sub(lambda m: _SWAP[m.group(0)], n)
        if twin not in where:
            return None
        out.append(where[twin])
    if not any(i != j for i, j in enumerate(out)):
        return None  # no sides named at all: the names say nothing about the geometry
    return out


def mirror_axis_angle(rotvec: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle radians in the head frame -> the mirrored rotation's, M R M with M = diag(-1, 1, 1):
    (x, y, z) -> (x, -y, -z)."""
    return rotvec * rotvec.new_tensor((1.0, -1.0, -1.0))


def mirror_params(params: HeadParams, expression_matrix: torch.Tensor) -> HeadParams:
    """The mirror image of ``params`` (T frames): expression (T, Ne) @ ``expression_matrix`` (Ne, Ne) from
    :func:`expression_mirror`, the jaw (T, 3) mirrored, the eyes (T, 6) swapped left for right and mirrored."""
    eyes = mirror_axis_angle(params.eyes.reshape(-1, 2, 3)).flip(1).reshape(-1, 6)
    return HeadParams(params.expression @ expression_matrix.to(params.expression), mirror_axis_angle(params.jaw), eyes)


__all__ = ["MIRROR", "expression_mirror", "mirror_axis_angle", "mirror_params",
           "mirror_vertex_index"]
