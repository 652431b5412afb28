"""Sharded on-disk training data that many processes or machines write in parallel and resume.

A folder of ``shard_UUUUU.safetensors`` files, one per *work unit* U (of ``units``): the arrays of
``dejavu.recon.data`` (images, masks, optional seen, pose6, shape, expression, jaw, n_views) for that
unit's identities, and as metadata the format, head, crop size, FOV, ``unit``, ``units`` and the
``recipe`` (JSON of everything that decides the contents: source, sizes, seed, ...).

Why it cannot race or lose work: a unit's contents depend only on (recipe, unit), each unit is one
file, and a file appears only by an atomic rename once complete. Workers take units round-robin
(worker w of W does units w, w + W, ...; :func:`units_for`) and skip units whose shard exists, so any
number of processes on any number of machines fill one folder (or one folder each, copied together
afterwards), an interrupted run resumes where it stopped, and even two workers given the same unit
write the same arrays. There is no shared index file to update: the reader builds its index from the
shards' headers and refuses a folder with missing units or mixed recipes.

:class:`ShardedSet` reads lazily (safetensors slices, memory-mapped): a training rank reads only the
samples of its batches, so the set can be far larger than memory.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np

from dejavu.errors import DejavuError
from dejavu.io import atomic_path
from dejavu.recon.data import ARRAYS, DATA_FOV_DEG, MultiViewSet

SHARD_FORMAT = "dejavu-recon-shards"
SHARD_VERSION = 1
#: Arrays read lazily, per sample; the others are small and read whole.
LAZY = ("images", "masks", "seen")
OPEN_HANDLES = 64


def shard_path(folder: str | Path, unit: int) -> Path:
    return Path(folder) / f"shard_{unit:05d}.safetensors"


def units_for(worker: int, workers: int, units: int) -> list[int]:
    """The units worker ``worker`` of ``workers`` produces (round-robin)."""
    if not 0 <= worker < workers:
        raise DejavuError(f"worker {worker} of {workers}: expected 0 <= worker < workers")
    return list(range(worker, units, workers))


def _header(path: Path) -> dict:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise DejavuError(f"{path}: not a readable safetensors shard ({exc})") from None
    if meta.get("format") != SHARD_FORMAT:
        raise DejavuError(f"{path}: format {meta.get('format')!r}, expected {SHARD_FORMAT!r}")
    return meta


def finished_units(folder: str | Path, recipe: dict, units: int) -> set[int]:
    """Units of ``folder`` already written with this ``recipe``; DejavuError on a shard of another one."""
    done = set()
    want = json.dumps(recipe, sort_keys=True)
    for path in sorted(Path(folder).glob("shard_*.safetensors")):
        meta = _header(path)
        if meta.get("recipe") != want or int(meta.get("units", -1)) != units:
            raise DejavuError(f"{path}: a shard of other data (recipe {meta.get('recipe')}, {meta.get('units')} units; "
                              f"now {want}, {units} units): use another folder or delete the old shards")
        done.add(int(meta["unit"]))
    return done


def write_shard(folder: str | Path, unit: int, units: int, recipe: dict, data: MultiViewSet) -> Path:
    """Write unit ``unit``'s identities atomically (the file appears complete or not at all)."""
    from safetensors.numpy import save_file


    meta = {"format": SHARD_FORMAT, "version": str(SHARD_VERSION), "head": data.head, "size": str(data.size),
            "fov_deg": str(DATA_FOV_DEG), "views": str(data.views), "unit": str(unit), "units": str(units),
            "recipe": json.dumps(recipe, sort_keys=True)}
    arrays = {a: np.ascontiguousarray(getattr(data, a)) for a in ARRAYS}
    if data.seen is not None:
        arrays["seen"] = np.ascontiguousarray(data.seen)
    path = shard_path(folder, unit)
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata=meta)
    return path


def has_shards(folder: str | Path) -> bool:
    return any(Path(folder).expanduser().glob("shard_*.safetensors"))


class ShardedSet:
    """A complete shard folder, read lazily; ``take`` and ``n_views`` as :class:`MultiViewSet` has them.

    Small per-identity arrays (pose6, shape, expression, jaw, n_views) are read whole at open; images,
    masks and seen per sample from memory-mapped slices.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser()
        self._handles: OrderedDict = OrderedDict()  # path -> open safe_open handle, least recently used first
        paths = sorted(self.folder.glob("shard_*.safetensors"))
        if not paths:
            raise DejavuError(f"{self.folder}: no shard_*.safetensors files (prepare the data first: dejavu prepare recon)")
        metas = [_header(p) for p in paths]
        first = metas[0]
        units = int(first["units"])
        for p, m in zip(paths, metas):
            if (m["recipe"], m["units"], m["head"], m["size"], m["views"]) != \
                    (first["recipe"], first["units"], first["head"], first["size"], first["views"]):
                raise DejavuError(f"{p}: a shard of other data than {paths[0].name} (recipe, head, size or views differ)")
        have = {int(m["unit"]) for m in metas}
        missing = sorted(set(range(units)) - have)
        if missing:
            raise DejavuError(f"{self.folder}: {len(missing)} of {units} shards missing (units {missing[:5]}"
                              f"{'...' if len(missing) > 5 else ''}): run dejavu prepare recon again to finish them")
        order = np.argsort([int(m["unit"]) for m in metas])
        self.paths = [paths[i] for i in order]
        self.head, self.size, self.views = first["head"], int(first["size"]), int(first["views"])
        self.recipe = json.loads(first["recipe"])
        small = {a: [] for a in ARRAYS if a not in LAZY}
        self._has_seen = []
        for p in self.paths:
            fh = self._handle(p)
            for a, parts in small.items():
                parts.append(fh.get_tensor(a))
            self._has_seen.append("seen" in fh.keys())  # noqa: SIM118 - a safe_open handle has no __contains__
        for a, parts in small.items():
            setattr(self, a, np.concatenate(parts))
        counts = np.array([len(n) for n in small["n_views"]])
        self._start = np.concatenate([[0], np.cumsum(counts)])
        self.has_seen = any(self._has_seen)

    def _handle(self, path: Path):
        from safetensors import safe_open

        cache = self._handles
        if path in cache:
            cache.move_to_end(path)
            return cache[path]
        fh = safe_open(str(path), framework="np")
        cache[path] = fh
        if len(cache) > OPEN_HANDLES:
            cache.popitem(last=False)
        return fh

    def __len__(self) -> int:
        return int(self._start[-1])

    def take(self, k: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
        """Samples (identity ``k[i]``, view ``v[i]``); arrays and shapes as ``MultiViewSet.take``."""
        k, v = np.asarray(k, np.int64), np.asarray(v, np.int64)
        shard = np.searchsorted(self._start, k, side="right") - 1
        rows = {a: [] for a in LAZY}
        for s, i, j in zip(shard, k - self._start[shard], v):
            fh = self._handle(self.paths[s])
            rows["images"].append(fh.get_slice("images")[i:i + 1, j:j + 1][0, 0])
            rows["masks"].append(fh.get_slice("masks")[i:i + 1, j:j + 1][0, 0])
            if self.has_seen:
                rows["seen"].append(fh.get_slice("seen")[i:i + 1, j:j + 1][0, 0] if self._has_seen[s]
                                    else np.full((self.size, self.size), 255, np.uint8))
        empty = (0, self.size, self.size)
        out = {"images": np.stack(rows["images"]) if len(k) else np.zeros((*empty, 3), np.uint8),
               "masks": np.stack(rows["masks"]) if len(k) else np.zeros(empty, np.uint8),
               "seen": (np.stack(rows["seen"]) if len(k) else np.zeros(empty, np.uint8)) if self.has_seen else None}
        out.update(pose6=self.pose6[k, v], shape=self.shape[k], expression=self.expression[k, v], jaw=self.jaw[k, v])
        return out

    def to_memory(self) -> MultiViewSet:
        """The whole set as a :class:`MultiViewSet` (small sets, tests)."""
        sets = []
        for p in self.paths:
            fh = self._handle(p)
            arrays = [fh.get_tensor(a) for a in ARRAYS]
            seen = fh.get_tensor("seen") if "seen" in fh.keys() else None  # noqa: SIM118 - see above
            sets.append(MultiViewSet(*arrays, head=self.head, size=self.size, seen=seen))
        return MultiViewSet.concat(sets)
