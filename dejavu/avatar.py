"""The avatar: what reconstruction and personalization produce and animation, export and evaluation use.

On disk an avatar is a directory (format in docs/AVATAR_FORMAT.md):

- ``avatar.json``: format version, head spec, UV size, blend scheme, settings, training record and
  the sha256 of the tensor file (a mismatch means an interrupted or foreign write).
- ``avatar.safetensors``: ``shape`` (Ns,), ``mean_offsets`` (13, S, S), optionally ``vertex_offsets``
  (V, 3), ``global_delta`` (13, S, S), ``blendmaps`` (K, 13, S, S) and ``pose_model`` (6, K + 4), and
  the blend scheme's arrays. No pickle.

All offset maps are in the reconstruction network's units (xyz in cm, see
``dejavu.gaussians.channels.XYZ_UNIT_M``); ``UVGaussianMap.apply_offsets`` converts. Animation needs
no network: vertices from the head model + offsets from this file.

Example:
    >>> model = Avatar.load("out/avatar").model("cpu")               # doctest: +SKIP
    >>> g = model(expression=torch.zeros(1, model.n_expr))          # Gaussians of one frame  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dejavu.errors import DejavuError
from dejavu.gaussians.channels import N_CHANNELS
from dejavu.gaussians.uvmap import UVGaussianMap
from dejavu.head import load_head
from dejavu.head.base import HeadModel
from dejavu.io import new_part, output_mode, sha256_file
from dejavu.model.avatar_model import AvatarModel, check_identity
from dejavu.model.blend import BlendScheme
from dejavu.outputs import AVATAR_JSON as JSON_NAME
from dejavu.outputs import AVATAR_PREVIOUS as PREVIOUS_NAME
from dejavu.outputs import AVATAR_TENSORS as TENSORS_NAME
from dejavu.outputs import (
    is_avatar_dir,  # noqa: F401  (re-exported: where callers have always found it)
    keep_previous_tensors,
    recover,
)

log = logging.getLogger(__name__)

FORMAT_NAME = "dejavu-avatar"
FORMAT_VERSION = 2  # 2: optional pose_model (older readers would ignore it and render it wrong)


@dataclass
class Avatar:
    """A person's avatar on a head model (all tensors float32, CPU unless moved).

    head: head spec for ``dejavu.head.load_head`` ("builtin", "flame:PATH", "procedural").
    uv_size: UV map side S.
    shape: (Ns,) identity coefficients.
    vertex_offsets: (V, 3) per-person rest-pose vertex offsets, metres (``dejavu.head.detail``), or None.
    mean_offsets: (13, S, S) mean UV offsets (network units: xyz in cm).
    global_delta: (13, S, S) stage-1 delta, or None.
    blendmaps: (K, 13, S, S) stage-2 blendmaps, or None.
    blend: how expressions become blend weights (see ``dejavu.model.blend``).
    pose_model: (6, K + 4) expression -> rigid pose correction learnt with personalization
        (``dejavu.personalize.pose``), or None.
    settings: free-form settings used to make it (resolution, config, ...), JSON-serialisable.
    training: training record (steps, seconds, device, source, metrics), JSON-serialisable.
    """

    head: str
    uv_size: int
    shape: torch.Tensor
    mean_offsets: torch.Tensor
    global_delta: torch.Tensor | None = None
    blendmaps: torch.Tensor | None = None
    blend: BlendScheme = field(default_factory=BlendScheme)
    settings: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    vertex_offsets: torch.Tensor | None = None
    pose_model: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.validate()

    # -- checks ---------------------------------------------------------------------------------
    def validate(self, where: str = "avatar") -> "Avatar":
        """Raise DejavuError naming ``where`` when shapes disagree."""
        S = self.uv_size
        expect = (N_CHANNELS, S, S)
        problems = []
        if self.shape.ndim != 1:
            problems.append(f"shape has shape {tuple(self.shape.shape)}, expected (Ns,)")
        if self.vertex_offsets is not None and (self.vertex_offsets.ndim != 2 or self.vertex_offsets.shape[1] != 3):
            problems.append(f"vertex_offsets has shape {tuple(self.vertex_offsets.shape)}, expected (V, 3)")
        if tuple(self.mean_offsets.shape) != expect:
            problems.append(f"mean_offsets has shape {tuple(self.mean_offsets.shape)}, expected {expect}")
        if self.global_delta is not None and tuple(self.global_delta.shape) != expect:
            problems.append(f"global_delta has shape {tuple(self.global_delta.shape)}, expected {expect}")
        if self.blendmaps is not None and tuple(self.blendmaps.shape) != (self.blend.k, *expect):
            problems.append(f"blendmaps has shape {tuple(self.blendmaps.shape)}, expected {(self.blend.k, *expect)}")
        if self.pose_model is not None and tuple(self.pose_model.shape) != (6, self.blend.k + 4):
            problems.append(f"pose_model has shape {tuple(self.pose_model.shape)}, expected {(6, self.blend.k + 4)}")
        if problems:
            raise DejavuError(f"{where}: {problems[0]}")
        return self

    @property
    def stage(self) -> str:
        """The most complete stage this avatar has: "full" (blendmaps), "global" or "mean"."""
        return "full" if self.blendmaps is not None else "global" if self.global_delta is not None else "mean"

    # -- use ------------------------------------------------------------------------------------
    def model(self, device: torch.device | str = "cpu", head: HeadModel | None = None,
              uvmap: UVGaussianMap | None = None) -> AvatarModel:
        """The :class:`~dejavu.model.avatar_model.AvatarModel` of this avatar (head model, UV map, maps) on
        ``device``: ``avatar.model(dev)(expression, jaw, eyes)`` gives its Gaussians. ``head`` and ``uvmap``,
        when given, are this avatar's head model and UV map already built on ``device`` (not rebuilt)."""
        head = head if head is not None else load_head(self.head, device)
        check_identity(head, self.shape, self.vertex_offsets)
        uvmap = uvmap if uvmap is not None else UVGaussianMap(head, self.uv_size).to(device)
        expected = self.settings.get("n_gaussians")
        if expected is not None and int(expected) != uvmap.n_gaussians:
            log.warning("avatar: made with %s Gaussians but head %r now lays out %d at UV %d; its UV layout changed "
                        "since, so the avatar may look wrong (re-create it)", expected, self.head, uvmap.n_gaussians,
                        self.uv_size)
        return AvatarModel(head, uvmap, self.shape, self.mean_offsets, self.global_delta, self.blendmaps, self.blend,
                           self.vertex_offsets, self.pose_model)

    # -- storage --------------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"shape": self.shape, "mean_offsets": self.mean_offsets}
        if self.vertex_offsets is not None:
            out["vertex_offsets"] = self.vertex_offsets
        if self.global_delta is not None:
            out["global_delta"] = self.global_delta
        if self.blendmaps is not None:
            out["blendmaps"] = self.blendmaps
        if self.pose_model is not None:
            out["pose_model"] = self.pose_model
        out = {k: v.detach().cpu().float().contiguous() for k, v in out.items()}
        out.update(self.blend.tensors())
        return out

    def save(self, directory: str | Path) -> Path:
        """Write ``avatar.safetensors`` and ``avatar.json`` into ``directory`` so that a kill at any instant
        leaves the old avatar or the new one readable.

        Both files are written in full under temporary names first. The old tensor file is kept (hard
        link) as :data:`PREVIOUS_NAME` until the new JSON, which records the new tensors' hash, is in
        place; :meth:`load` reads it while the JSON still names it, and :func:`recover` (run by the next
        save or output check) puts it back or removes it.
        """
        from safetensors.torch import save as safetensors_bytes

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        recover(directory)
        tensor_path, json_path, previous = directory / TENSORS_NAME, directory / JSON_NAME, directory / PREVIOUS_NAME
        tmp_tensors, tmp_json = new_part(tensor_path), new_part(json_path)
        try:
            # serialised here and written to our own temporary name: safetensors' save_file writes through a
            # temporary file of its own (".tmpXXXXXX") that a kill would leave behind, unknown to the cleanup
            tmp_tensors.write_bytes(safetensors_bytes(self.tensors(),
                                                      metadata={"format": FORMAT_NAME, "version": str(FORMAT_VERSION)}))
            meta = {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "head": self.head,
                "uv_size": self.uv_size,
                "n_shape": int(self.shape.shape[0]),
                "stage": self.stage,
                "blend": self.blend.meta(),
                "settings": self.settings,
                "training": self.training,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "tensors_sha256": sha256_file(tmp_tensors),
            }
            tmp_json.write_text(json.dumps(meta, indent=2) + "\n")
            for tmp in (tmp_tensors, tmp_json):  # safetensors makes its file anew (0600 from the temp name)
                os.chmod(tmp, output_mode())
            if json_path.is_file() and tensor_path.is_file():
                keep_previous_tensors(tensor_path, previous)
            os.replace(tmp_tensors, tensor_path)
            os.replace(tmp_json, json_path)  # the commit: from here on the new avatar is the one read
            previous.unlink(missing_ok=True)
        finally:
            for tmp in (tmp_tensors, tmp_json):
                tmp.unlink(missing_ok=True)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "Avatar":
        """Read an avatar directory; DejavuError on anything missing, corrupt, non-finite or incompatible."""
        directory = Path(directory)
        json_path, tensor_path = directory / JSON_NAME, directory / TENSORS_NAME
        if not directory.is_dir():
            raise DejavuError(f"{directory}: no such avatar directory")
        for path in (json_path, tensor_path):
            if not path.is_file():
                raise DejavuError(f"{path}: missing; {directory} is not a complete avatar directory")
        try:
            meta = json.loads(json_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DejavuError(f"{json_path}: not valid JSON ({exc.__class__.__name__})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise DejavuError(f"{json_path}: not a dejavu avatar (format field is {meta.get('format') if isinstance(meta, dict) else None!r})")
        version = _int_field(meta, "version", json_path, default=1)
        if version > FORMAT_VERSION:
            raise DejavuError(f"{json_path}: avatar format version {version} is newer than this "
                              f"dejavu understands ({FORMAT_VERSION}); upgrade dejavu")
        uv_size = _int_field(meta, "uv_size", json_path)
        if uv_size < 1:
            raise DejavuError(f"{json_path}: field 'uv_size' is {uv_size}, expected a positive size")
        for name in ("settings", "training", "blend"):
            if meta.get(name) is not None and not isinstance(meta[name], dict):
                raise DejavuError(f"{json_path}: field {name!r} is not an object")
        digest = meta.get("tensors_sha256")
        if digest and digest != sha256_file(tensor_path):
            previous = directory / PREVIOUS_NAME
            if previous.is_file() and digest == sha256_file(previous):  # a save was killed between its renames
                log.info("%s: reading the avatar from %s (a save was interrupted)", directory, previous.name)
                tensor_path = previous
            else:
                raise DejavuError(f"{tensor_path}: contents do not match {JSON_NAME} (interrupted write or edited file)")
        tensors = _read_tensors(tensor_path)
        for name in ("shape", "mean_offsets"):
            if name not in tensors:
                raise DejavuError(f"{tensor_path}: tensor {name!r} is missing")
        for name, value in tensors.items():
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise DejavuError(f"{tensor_path}: tensor {name!r} holds NaN or infinite values")
        try:
            blend = BlendScheme.from_storage(meta.get("blend") or {"kind": "softmax_first_k", "k": 10}, tensors)
            avatar = cls(
                head=str(meta["head"]), uv_size=uv_size, shape=tensors["shape"],
                mean_offsets=tensors["mean_offsets"], global_delta=tensors.get("global_delta"),
                blendmaps=tensors.get("blendmaps"), blend=blend, settings=meta.get("settings") or {},
                training=meta.get("training") or {}, vertex_offsets=tensors.get("vertex_offsets"),
                pose_model=tensors.get("pose_model"),
            )
        except KeyError as exc:
            raise DejavuError(f"{json_path}: field {exc.args[0]!r} is missing") from None
        except DejavuError as exc:
            raise DejavuError(f"{directory}: {str(exc).removeprefix('avatar: ')}") from None
        except (TypeError, ValueError) as exc:
            raise DejavuError(f"{json_path}: malformed avatar ({exc})") from None
        return avatar


def _int_field(meta: dict, name: str, json_path: Path, default: int | None = None) -> int:
    value = meta.get(name, default)
    if value is None:
        raise DejavuError(f"{json_path}: field {name!r} is missing")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DejavuError(f"{json_path}: field {name!r} is {value!r}, expected a whole number")
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not math.isfinite(number) or number != int(number):
        raise DejavuError(f"{json_path}: field {name!r} is {value!r}, expected a whole number")
    return int(number)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise DejavuError(f"{path}: not a readable safetensors file ({exc})") from None
