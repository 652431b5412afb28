"""A restricted unpickler for model files that carry numpy arrays, scipy sparse matrices and chumpy arrays.

FLAME's pickles (and LPIPS weight dumps) are Python pickles; loading them with ``pickle.load`` would
run any code an untrusted file asks for. :func:`safe_load` only resolves a short allow-list of
globals: numpy's array/dtype/scalar reconstruction, scipy sparse matrix classes (rebuilt from their
``data/indices/indptr`` state by a stand-in, never by scipy's own ``__setstate__``), and
``chumpy.ch.Ch``, mapped to a stand-in that keeps the array in its ``x`` state. Anything else (e.g.
``os.system``) raises :class:`DejavuError` naming the file and the refused global. chumpy is never imported.
"""

from __future__ import annotations

import codecs
import copyreg
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from dejavu.errors import DejavuError


class ChStandIn:
    """Replaces ``chumpy.ch.Ch``: keeps the pickled state; :meth:`array` returns its value ``x``."""

    def __new__(cls, *args, **kwargs):  # NEWOBJ passes no useful args
        return object.__new__(cls)

    def __setstate__(self, state: dict) -> None:
        self.state = state if isinstance(state, dict) else {}

    def array(self) -> np.ndarray:
        if "x" not in getattr(self, "state", {}):
            raise ValueError("chumpy object without a stored value 'x'")
        return to_array(self.state["x"])


class SparseStandIn:
    """Replaces scipy's sparse matrix classes; :meth:`matrix` rebuilds a CSC/CSR/COO matrix from state."""

    format = "csc"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __setstate__(self, state: dict) -> None:
        self.state = state if isinstance(state, dict) else {}

    def matrix(self):
        import scipy.sparse as sp

        s = self.state
        shape = tuple(int(n) for n in (s.get("_shape") or s.get("shape")))
        if self.format in ("csc", "csr"):
            cls = sp.csc_matrix if self.format == "csc" else sp.csr_matrix
            return cls((np.asarray(s["data"]), np.asarray(s["indices"]), np.asarray(s["indptr"])), shape=shape)
        row = np.asarray(s.get("row", s.get("coords", [None])[0]))
        col = np.asarray(s.get("col", s.get("coords", [None, None])[1]))
        return sp.coo_matrix((np.asarray(s["data"]), (row, col)), shape=shape)


def _sparse_class(fmt: str) -> type:
    return type(f"{fmt.upper()}StandIn", (SparseStandIn,), {"format": fmt})


_SPARSE = {fmt: _sparse_class(fmt) for fmt in ("csc", "csr", "coo")}


def _reconstructor(cls, base, state):
    """copyreg._reconstructor restricted to the stand-ins (protocol 0/1 pickles of new-style classes)."""
    if isinstance(cls, type) and issubclass(cls, (ChStandIn, SparseStandIn)):
        return cls.__new__(cls)
    raise RefusedGlobal(f"refused to rebuild {cls!r}")


def _allowed() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = np.core.multiarray._reconstruct
        allowed[(mod, "scalar")] = np.core.multiarray.scalar
    from numpy.core.numeric import _frombuffer  # protocol-5 arrays

    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(mod, "_frombuffer")] = _frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    for name in ("float64", "float32", "int64", "int32", "uint32", "uint8", "bool_"):
        allowed[("numpy", name)] = getattr(np, name)
    allowed[("_codecs", "encode")] = codecs.encode
    for mod in ("copy_reg", "copyreg"):
        allowed[(mod, "_reconstructor")] = _reconstructor
    for mod in ("__builtin__", "builtins"):
        allowed[(mod, "object")] = object
        allowed[(mod, "set")] = set
        allowed[(mod, "frozenset")] = frozenset
    for fmt, cls in _SPARSE.items():
        for mod in (f"scipy.sparse.{fmt}", f"scipy.sparse._{fmt}", "scipy.sparse"):
            allowed[(mod, f"{fmt}_matrix")] = cls
            allowed[(mod, f"{fmt}_array")] = cls
    allowed[("chumpy.ch", "Ch")] = ChStandIn
    return allowed


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list."""


class _RestrictedUnpickler(pickle.Unpickler):
    _ALLOWED = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"the pickle asks for {module}.{name}") from None


def to_array(value: Any) -> Any:
    """Stand-ins -> numpy arrays / scipy matrices; other values unchanged."""
    if isinstance(value, ChStandIn):
        return value.array()
    if isinstance(value, SparseStandIn):
        return value.matrix()
    return value


def safe_load(path: str | Path) -> Any:
    """Unpickle ``path`` allowing only numpy/scipy.sparse/chumpy arrays; dict values are converted by :func:`to_array`.

    Raises:
        DejavuError: not a pickle, or it asks for anything outside the allow-list.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            obj = _RestrictedUnpickler(fh, encoding="latin1").load()
    except RefusedGlobal as exc:
        raise DejavuError(f"{path}: refused to load ({exc}); only numpy, scipy.sparse and chumpy arrays are allowed") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, ImportError, MemoryError) as exc:
        raise DejavuError(f"{path}: not a readable pickle ({exc.__class__.__name__}: {exc})") from None
    except OSError as exc:
        raise DejavuError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if isinstance(obj, dict):
        try:
            obj = {str(k): to_array(v) for k, v in obj.items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise DejavuError(f"{path}: unsupported array in the pickle ({exc})") from None
    return obj
