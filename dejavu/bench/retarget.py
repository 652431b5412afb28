"""Fit the ARKit <-> FLAME retargeting maps for a FLAME model and report their accuracy and fit time.

Accuracy: for each of the 52 ARKit units at full activation (and each FLAME component at +1 and -1),
the RMS landmark motion it causes and the RMS landmark error left after retargeting it onto the other
head, in millimetres over the landmarks embedded on both heads (:mod:`dejavu.drive.retarget`).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from dejavu.bench.common import machine_info
from dejavu.drive.arkit import ARKIT_NAMES
from dejavu.drive.retarget import retarget_maps
from dejavu.errors import DejavuError
from dejavu.head import load_head


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--flame", default=None, help="FLAME model file or folder (default: $DEJAVU_FLAME)")


def run(args: argparse.Namespace) -> dict:
    flame = args.flame or os.environ.get("DEJAVU_FLAME")
    if not flame:
        raise DejavuError("dejavu bench retarget: give --flame PATH (or set $DEJAVU_FLAME)")
    builtin = load_head("builtin")
    flame_head = load_head(flame if flame.startswith("flame:") else f"flame:{flame}")
    t0 = time.perf_counter()
    maps = retarget_maps(builtin, flame_head, cache=False)
    seconds = time.perf_counter() - t0
    names = list(builtin.expr_names)
    worst = np.argsort(-maps.arkit_error_mm)[:5]
    res = {"target": "retarget", "flame": str(flame), "fit_seconds": round(seconds, 2), **maps.summary(),
           "worst_arkit_units_mm": {names[i] if i < len(names) else ARKIT_NAMES[i]:
                                    [round(float(maps.arkit_error_mm[i]), 2), round(float(maps.arkit_motion_mm[i]), 2)]
                                    for i in worst},
           "machine": machine_info()}
    a, f = res["arkit_to_flame"], res["flame_to_arkit"]
    print(f"retarget: fitted in {seconds:.1f} s; ARKit->FLAME median landmark error {a.get('median_error_mm')} mm "
          f"({a.get('median_relative_error')} of the motion), FLAME->ARKit {f.get('median_error_mm')} mm "
          f"({f.get('median_relative_error')})")
    return res
