"""Benchmarks behind ``dejavu bench <target>``: one module per target, listed in :data:`TARGETS`.

A target is the module ``dejavu.bench.<name>``, exposing ``add_arguments(parser)`` and ``run(args) -> dict``
(the result, printed and optionally saved as JSON); it imports what it times at its top, and the CLI imports
it only when its target is chosen (:mod:`dejavu.cli.commands`). Helpers the targets share: :mod:`.common`.
"""

from __future__ import annotations

#: Target name (module ``dejavu.bench.<name>``) -> its line in ``dejavu bench --help``, in listing order.
TARGETS: dict[str, str] = {
    "render": "time the Gaussian rasterizer (forward, forward+backward) against the torch reference",
    "track": "time face tracking (landmarks, fit, crops, masks) on the first frames of a video",
    "personalize": "time personalization training steps (both stages) on a tracked video",
    "animate": "time avatar animation: frames/s rendering the expression sweep, then encoding",
    "reconstruct": "time and score `dejavu reconstruct` on photos (fresh processes), photo vs network colours",
    "quality": "personalize videos and score their held-out frames against the quality targets",
    "dataprep": "time training-data preparation with 1 and more worker processes",
    "web": "time the web player's avatar evaluation in headless Chromium and size its site",
    "drive": "time reading a Live Link Face take into a Drive, against rendering it",
    "retarget": "fit the ARKit <-> FLAME retargeting maps for a FLAME model; accuracy and fit time",
    "live": "time live tracking (landmarks + per-frame fit) streamed over a WebSocket, against the Adam fitter",
}
