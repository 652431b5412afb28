"""dejavu: one photo or a short video -> a controllable 3D Gaussian head avatar.

Implements "Gaussian Deja-vu" (Yan et al.). Conventions (units, frames, image layout) are written
once in ``docs/CONVENTIONS.md``. ``import dejavu`` is light: heavy backends load lazily.
"""

__version__ = "0.1.0"
