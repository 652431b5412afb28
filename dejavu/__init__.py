"""dejavu: one photo or a short video -> a controllable 3D Gaussian head avatar.

Implements "Gaussian Deja-vu" (Yan et al.). Conventions (units, frames, image layout) are written
once in ``docs/CONVENTIONS.md``. ``import dejavu`` is light: heavy backends load lazily.
"""

import os as _os

# Torch's OpenMP pool and numba's pool otherwise spin-wait and steal each other's cores on small
# machines (measured: 20k-Gaussian forward+backward 416 ms -> 159 ms wall on 2 busy cores). It must be
# set before torch is imported, which is why it lives here.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# MediaPipe's C++ side logs several lines of internal warnings per model load; users need none of them.
_os.environ.setdefault("GLOG_minloglevel", "2")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
