"""The UV Gaussian map's channel layout, defined once. Nothing else indexes channels by number.

A UV Gaussian map is a (B, 13, S, S) tensor. Per texel:
    XYZ       (3) position offset, metres (network outputs are scaled by XYZ_UNIT_M first)
    LOG_SCALE (3) natural-log scale, metres
    ROT       (3) quaternion vector part (x, y, z); the real part w is fixed to 1, then normalised
    OPACITY   (1) opacity logit
    COLOR     (3) spherical-harmonics degree-0 (DC) colour coefficient
"""

from __future__ import annotations

XYZ = slice(0, 3)
LOG_SCALE = slice(3, 6)
ROT = slice(6, 9)
OPACITY = slice(9, 10)
COLOR = slice(10, 13)
N_CHANNELS = 13

CHANNELS = {"xyz": XYZ, "log_scale": LOG_SCALE, "rot": ROT, "opacity": OPACITY, "color": COLOR}

#: The network's xyz output unit: one unit = 1 cm (the authors' 0.01 factor in metres).
XYZ_UNIT_M = 0.01
#: SH degree-0 constant: rgb = 0.5 + SH_C0 * dc.
SH_C0 = 0.28209479177387814
#: Initial values (method notes): log-scale -8.3533 (2.36e-4 m). Colour: the authors' DC -1.7725 is
#: black *exactly at* the clamp (0.5 + SH_C0 * -1.7725 = -1e-5), where clamp_min(0) passes no gradient,
#: so a zero colour offset could never learn. -1.70 is near-black (RGB 0.020) and trainable.
INIT_LOG_SCALE = -8.3533
INIT_COLOR_DC = -1.70
