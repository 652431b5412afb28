"""AVX2/FMA tile kernels for the CPU backend: ``simd_raster.c``, built on first use, run from numba.

The per-pixel loops of ``cpu._forward`` and ``cpu._backward`` are ~90% of a render's time and numba
leaves them scalar; ``simd_raster.c`` does them 8 pixels at a time with AVX2/FMA intrinsics. On first
use the C source shipped beside this module is compiled with the system C compiler (``$CC`` or ``cc``)
into ``cache_dir()/render/`` (``$DEJAVU_CACHE``), named by the hash of the source and the build flags,
renamed into place atomically (concurrent first uses each build and one rename wins), and loaded with
ctypes; a library already built there needs no compiler. Threads stay numba's: a prange loop over
tiles calls the C function once per tile, through its address passed as an argument (an indirect call,
:func:`_indirect_call`), so the loops are cached like the other kernels instead of compiled in every
process (~1.5 s when they held the address as a constant).

:func:`kernels` returns None, and :func:`unavailable_reason` says why (also logged at INFO), when the
CPU lacks AVX2 or FMA, no library is built and no compiler found, or the build fails; the CPU backend then keeps its numba
kernels. ``config.CPU_KERNELS = "numba"`` (``DEJAVU_CPU_KERNELS=numba``) forces them (``cpu.tile_kernels``).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from dejavu.io import atomic_path, cache_dir
from dejavu.render import config

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("simd_raster.c")
# -std=c11: no implicit FMA contraction of the scalar code (the vector code fuses explicitly);
# -fno-math-errno: sqrtf inline (its argument is checked first); no -ffast-math: NaN/ordering kept.
FLAGS = ("-O3", "-std=c11", "-mavx2", "-mfma", "-fno-math-errno", "-shared", "-fPIC")


class Kernels(NamedTuple):
    """numba tile loops over the C kernels, same signatures as ``cpu._forward`` / ``cpu._backward``."""

    forward: Callable
    backward: Callable


def _defines() -> tuple[str, ...]:
    """The image-defining constants the C source takes from ``config`` (float32, as hex literals)."""
    def f32(x: float) -> str:
        return float(np.float32(x)).hex() + "f"

    return (f"-DDJ_TILE={config.TILE_SIZE}", f"-DDJ_ALPHA_MIN={f32(config.ALPHA_MIN)}",
            f"-DDJ_ALPHA_MAX={f32(config.ALPHA_MAX)}", f"-DDJ_T_MIN={f32(config.T_MIN)}")


def _cpu_supported() -> bool:
    import llvmlite.binding as llvm  # numba's LLVM: knows the host CPU's features on every platform

    features = llvm.get_host_cpu_features()
    return bool(features.get("avx2")) and bool(features.get("fma"))


def _library() -> Path:
    """Where the build of ``SOURCE`` with these flags lives (named by their hash)."""
    key = hashlib.sha256(SOURCE.read_bytes() + "\0".join((*FLAGS, *_defines())).encode()).hexdigest()[:16]
    return cache_dir() / "render" / f"simd_raster-{key}.so"


def _build(compiler: str, path: Path) -> None:
    """Compile ``SOURCE`` into ``path`` (renamed into place: concurrent builds are harmless)."""
    with atomic_path(path) as tmp:
        subprocess.run([compiler, *FLAGS, *_defines(), str(SOURCE), "-o", str(tmp)], check=True, capture_output=True,
                       text=True, timeout=120)
    log.info("built %s", path)


def _indirect_call(n_args: int):
    """A numba intrinsic ``call(address, args)``: calls the C function at ``address`` (int64) as
    ``void f(int64 x n_args)`` with ``args``, a tuple of ``n_args`` int64 (pointers and integers alike: on
    x86-64 both travel in integer registers). Compiled code holds no address, so the loops that use it
    cache like any other numba function."""

    @intrinsic
    def call(typingctx, address, args):
        if not (isinstance(args, types.UniTuple) and args.count == n_args and args.dtype == types.int64):
            return None

        def codegen(context, builder, signature, llargs):
            i64 = ir.IntType(64)
            fn = builder.inttoptr(llargs[0], ir.FunctionType(ir.VoidType(), [i64] * n_args).as_pointer())
            builder.call(fn, [builder.extract_value(llargs[1], k) for k in range(n_args)])
            return context.get_dummy_value()

        return types.void(types.int64, args), codegen

    return call


_call15, _call13 = _indirect_call(15), _indirect_call(13)


@njit(parallel=True, nogil=True, cache=True)
def _forward_loop(address, params, offsets, gids, bg, out, T_out, last_out, tw, th, v_pix, v_rows):
    """As ``cpu._forward``: params (G, 13), offsets (T + 1,) int64, gids (I,) int32, bg (B, 3) -> out
    (B, H, W, 5), T_out (B, H, W), last_out (B, H, W) int32; v_pix (B, H, W, C) -> v_rows (I, C). ``address``:
    ``dj_forward_tile``'s, called once per tile."""
    H, W = out.shape[1], out.shape[2]
    for tid in prange(offsets.shape[0] - 1):
        _call15(address, (np.int64(params.ctypes.data), np.int64(offsets.ctypes.data), np.int64(gids.ctypes.data),
                          np.int64(bg.ctypes.data), np.int64(out.ctypes.data), np.int64(T_out.ctypes.data),
                          np.int64(last_out.ctypes.data), np.int64(tid), np.int64(tw), np.int64(th), np.int64(H),
                          np.int64(W), np.int64(v_pix.ctypes.data), np.int64(v_pix.shape[3]),
                          np.int64(v_rows.ctypes.data)))


@njit(parallel=True, nogil=True, cache=True)
def _backward_loop(address, params, offsets, gids, bg, T_final, last_idx, v_out, v_isect, tw, th):
    """As ``cpu._backward``: T_final, last_idx (B, H, W), v_out (B, H, W, 5) -> v_isect (I, 10) (zeroed).
    ``address``: ``dj_backward_tile``'s, called once per tile."""
    H, W = T_final.shape[1], T_final.shape[2]
    for tid in prange(offsets.shape[0] - 1):
        _call13(address, (np.int64(params.ctypes.data), np.int64(offsets.ctypes.data), np.int64(gids.ctypes.data),
                          np.int64(bg.ctypes.data), np.int64(T_final.ctypes.data), np.int64(last_idx.ctypes.data),
                          np.int64(v_out.ctypes.data), np.int64(v_isect.ctypes.data), np.int64(tid), np.int64(tw),
                          np.int64(th), np.int64(H), np.int64(W)))


def _wrap(lib: ctypes.CDLL) -> Kernels:
    """The tile loops bound to ``lib``'s per-tile functions (their addresses passed as arguments)."""
    fwd = ctypes.cast(lib.dj_forward_tile, ctypes.c_void_p).value
    bwd = ctypes.cast(lib.dj_backward_tile, ctypes.c_void_p).value
    return Kernels(functools.partial(_forward_loop, fwd), functools.partial(_backward_loop, bwd))


@functools.cache
def _load() -> tuple[Kernels | None, str]:
    """(kernels, "") or (None, why not), once per process; a fallback is logged once."""
    k, reason = _try_load()
    log.info("CPU renderer tile kernels: %s", "C/AVX2" if k is not None else f"numba ({reason})")
    return k, reason


def _try_load() -> tuple[Kernels | None, str]:
    if not _cpu_supported():
        return None, "the CPU lacks AVX2 or FMA"
    try:
        path = _library()
        if not path.exists():
            compiler = shutil.which(os.environ.get("CC", "cc"))
            if compiler is None:
                return None, f"no C compiler ({os.environ.get('CC', 'cc')}) on PATH"
            _build(compiler, path)
        return _wrap(ctypes.CDLL(str(path))), ""
    except subprocess.CalledProcessError as e:
        return None, f"building {SOURCE.name} failed: {e.stderr.strip()[-2000:]}"
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"building or loading {SOURCE.name} failed: {e}"


def kernels() -> Kernels | None:
    """The C tile kernels (built and loaded on the first call), or None where they cannot run."""
    return _load()[0]


def unavailable_reason() -> str:
    """Why :func:`kernels` is None ("" when the C kernels are available)."""
    return _load()[1]
