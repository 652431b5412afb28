"""``dejavu demo -o DIR [--video V]``: the whole pipeline on skimage's astronaut photo (or a video).

Photo: reconstruct (the generalized network), refine it on the photo (stage-1 rectification), animate through expressions with an orbiting camera,
export a .ply. Video: personalize with a short budget, animate (sweep + self-reenactment side by
side), export. Prints where everything is.
"""

from __future__ import annotations

import argparse

#: What the demo writes (two avatars with their trackings, two videos, a .ply), with room.
DEMO_BYTES = 200 << 20


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the pipeline end to end on a sample photo (or --video)",
        description="Without --video: reconstruct an avatar from skimage's astronaut photo, animate it through "
                    "expressions and an orbit, export a .ply. With --video: personalize (short budget), animate, export.")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--video", default=None, help="a short talking-head video to personalize on")
    parser.add_argument("--minutes", type=float, default=6.0, help="personalization budget with --video (default 6)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--force", action="store_true", help="replace the avatars of an earlier demo in the folder")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dejavu.cli.values import check_positive

    check_positive("--minutes", args.minutes)
    outputs = run_demo(Path(args.output), video=args.video, minutes=args.minutes, device=args.device, force=args.force)
    print("demo outputs:")
    for name, path in outputs.items():
        print(f"  {name:<14} {path}")
    return 0


def run_demo(out: "Path", video: str | None = None, minutes: float = 6.0, device: str = "auto",
             force: bool = False) -> dict:
    """Run the demo into ``out``; returns {what: path}. Orchestration only: each step is another command's API.
    The avatars of an earlier demo in ``out`` are replaced only with ``force``."""
    import logging

    from dejavu.animate import animate
    from dejavu.export import export_avatar
    from dejavu.outputs import check_output_dir

    log = logging.getLogger("dejavu.demo")
    check_output_dir(out, need_bytes=DEMO_BYTES)
    avatars = ("video_avatar",) if video else ("astronaut_network", "astronaut_avatar")
    for name in avatars:
        check_output_dir(out / name, kind="avatar", force=force)
    out.mkdir(parents=True, exist_ok=True)
    outputs: dict = {}
    if video is None:
        avatar_dir = out / "astronaut_avatar"
        outputs["photo"] = _astronaut(out / "astronaut.png")
        outputs["avatar"] = _reconstruct(outputs["photo"], avatar_dir, device, log, force)
    else:
        import dataclasses

        from dejavu.personalize.pipeline import personalize
        from dejavu.personalize.config import preset

        avatar_dir = out / "video_avatar"
        cfg = dataclasses.replace(preset("cpu"), minutes=minutes)
        personalize(video, avatar_dir, cfg, device=device, force=force)
        outputs["avatar"] = avatar_dir
        outputs["reenactment"] = animate(avatar_dir, out / "reenactment.mp4", drive=avatar_dir / "tracking",
                                         camera="source", side_by_side=True, device=device)["output"]
    from dejavu.personalize.pipeline import VIEWS_FILE

    if (avatar_dir / VIEWS_FILE).is_file():
        outputs["views"] = avatar_dir / VIEWS_FILE
    outputs["expressions"] = animate(avatar_dir, out / "expressions.mp4", drive=None, camera="orbit",
                                     device=device)["output"]
    outputs["ply"] = export_avatar(avatar_dir, out / "avatar.ply", device=device)[0]
    return outputs


def _refine_photo(avatar_dir: "Path", tracking_dir: "Path", device: str, log, force: bool = False) -> "Path":
    """Stage-1 rectification (paper section 3.4) on the single photo, starting from the network's offsets.

    The shipped CPU network is small and gives a blurry, generic head; 150 steps of the global UV
    rectification at UV 128 (~25 s here) make the avatar look like the person while keeping the
    network's 3D prior for unseen views and expressions. ``dejavu personalize PHOTO`` does the same.
    """
    import dataclasses

    from dejavu.personalize.pipeline import personalize
    from dejavu.personalize.config import preset

    log.info("demo: refining the network's avatar on the photo (stage-1 rectification, 150 steps)")
    cfg = dataclasses.replace(preset("cpu"), steps=150, uv_size=128, stage1_fraction=1.0, train_fraction=1.0,
                              batch_size=1, lpips_start=20, preview_every=50)
    # the network's tracking of the photo, as it is: tracking the photo again with the default fit would
    # rewrite that folder under the network avatar for a 0.06 px closer landmark fit
    personalize(tracking_dir, avatar_dir, cfg, device=device, force=force)
    return avatar_dir


def _astronaut(path: "Path") -> "Path":
    """skimage's astronaut photo (public domain, NASA) written as a PNG."""
    from skimage import data

    from dejavu.io import write_image

    return write_image(path, data.astronaut())


def _reconstruct(image: "Path", avatar_dir: "Path", device: str, log, force: bool = False) -> "Path":
    """The generalized network's avatar; without it, a network-free single-image fit (clearly logged)."""
    from dejavu.errors import DejavuError

    try:
        from dejavu.recon.predict import default_weights, reconstruct

        default_weights()  # raises when the shipped weights are missing
    except (ImportError, DejavuError) as exc:
        log.warning("demo: %s", exc)
        reconstruct = None
    if reconstruct is not None:
        network_dir = avatar_dir.parent / "astronaut_network"
        reconstruct(image, network_dir, device=device, force=force)
        return _refine_photo(avatar_dir, network_dir / "tracking", device, log, force)
    import dataclasses

    from dejavu.personalize.pipeline import personalize
    from dejavu.personalize.config import preset

    log.warning("demo: the reconstruction network (dejavu.recon.predict) is not available; fitting the photo "
                "directly instead (network-free stage-1 fit, ~1 minute; expressions will look less natural)")
    cfg = dataclasses.replace(preset("cpu"), steps=120, stage1_fraction=1.0, train_fraction=1.0, batch_size=1,
                              lpips_start=20, preview_every=40)
    personalize(image, avatar_dir, cfg, device=device, force=force)
    return avatar_dir
