"""The demo's job (``dejavu demo``): the whole pipeline on skimage's astronaut photo, or on a video.

Photo: reconstruct (the generalized network), refine it on the photo (stage-1 rectification, preset
``photo``), animate through expressions with an orbiting camera, export a .ply. Video: personalize with a
short budget, animate (sweep + self-reenactment side by side), export. Orchestration only: each step is
another command's API.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from dejavu.animate import animate
from dejavu.errors import DejavuError
from dejavu.export import export_avatar
from dejavu.io import write_image
from dejavu.outputs import check_output_dir
from dejavu.personalize.config import preset
from dejavu.personalize.pipeline import VIEWS_FILE, personalize
from dejavu.recon.predict import default_weights, reconstruct

log = logging.getLogger("dejavu.demo")

#: What the demo writes (two avatars with their trackings, two videos, a .ply), with room.
DEMO_BYTES = 200 << 20


def run_demo(out: Path, video: str | None = None, minutes: float = 6.0, device: str = "auto",
             force: bool = False) -> dict:
    """Run the demo into ``out``; returns {what: path}. Orchestration only: each step is another command's API.
    The avatars of an earlier demo in ``out`` are replaced only with ``force``."""
    check_output_dir(out, need_bytes=DEMO_BYTES)
    avatars = ("video_avatar",) if video else ("astronaut_network", "astronaut_avatar")
    for name in avatars:
        check_output_dir(out / name, kind="avatar", force=force)
    out.mkdir(parents=True, exist_ok=True)
    outputs: dict = {}
    if video is None:
        avatar_dir = out / "astronaut_avatar"
        outputs["photo"] = _astronaut(out / "astronaut.png")
        outputs["avatar"] = _reconstruct(outputs["photo"], avatar_dir, device, force)
    else:
        avatar_dir = out / "video_avatar"
        cfg = dataclasses.replace(preset("cpu"), minutes=minutes)
        personalize(video, avatar_dir, cfg, device=device, force=force)
        outputs["avatar"] = avatar_dir
        outputs["reenactment"] = animate(avatar_dir, out / "reenactment.mp4", drive=avatar_dir / "tracking",
                                         camera="source", side_by_side=True, device=device)["output"]
    if (avatar_dir / VIEWS_FILE).is_file():
        outputs["views"] = avatar_dir / VIEWS_FILE
    outputs["expressions"] = animate(avatar_dir, out / "expressions.mp4", drive=None, camera="orbit",
                                     device=device)["output"]
    outputs["ply"] = export_avatar(avatar_dir, out / "avatar.ply", device=device)[0]
    return outputs


def _refine_photo(avatar_dir: Path, tracking_dir: Path, device: str, force: bool = False) -> Path:
    """Stage-1 rectification (paper section 3.4) on the single photo, starting from the network's offsets.

    The shipped CPU network is small and gives a blurry, generic head; 150 steps of the global UV
    rectification at UV 128 (~25 s here) make the avatar look like the person while keeping the
    network's 3D prior for unseen views and expressions. ``dejavu personalize PHOTO`` does the same.
    """
    log.info("demo: refining the network's avatar on the photo (stage-1 rectification, 150 steps)")
    cfg = preset("photo")
    # the network's tracking of the photo, as it is: tracking the photo again with the default fit would
    # rewrite that folder under the network avatar for a 0.06 px closer landmark fit
    personalize(tracking_dir, avatar_dir, cfg, device=device, force=force)
    return avatar_dir


def _astronaut(path: Path) -> Path:
    """skimage's astronaut photo (public domain, NASA) written as a PNG."""
    from skimage import data  # scikit-image: only the demo needs it

    return write_image(path, data.astronaut())


def _reconstruct(image: Path, avatar_dir: Path, device: str, force: bool = False) -> Path:
    """The generalized network's avatar; without it, a network-free single-image fit (clearly logged)."""
    try:
        default_weights()  # raises when the shipped weights are missing
        have_network = True
    except DejavuError as exc:
        log.warning("demo: %s", exc)
        have_network = False
    if have_network:
        network_dir = avatar_dir.parent / "astronaut_network"
        reconstruct(image, network_dir, device=device, force=force)
        return _refine_photo(avatar_dir, network_dir / "tracking", device, force)
    log.warning("demo: the reconstruction network (dejavu.recon.predict) is not available; fitting the photo "
                "directly instead (network-free stage-1 fit, ~1 minute; expressions will look less natural)")
    personalize(image, avatar_dir, preset("photo_scratch"), device=device, force=force)
    return avatar_dir
