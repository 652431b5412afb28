"""Single-image reconstruction metrics (paper Tables 2-3): render the avatar on the photo's tracked
camera and expression and compare with the photo, on the face region and on the whole head.

The target is the aligned crop with everything outside the head mask set to white (the paper's ground
truth: background, clothes and neck removed). Regions: ``face`` and ``head`` average L1/PSNR/SSIM over
the region's pixels only and give LPIPS/MS-SSIM both images white outside it (``dejavu.metrics.image``);
``image`` is the whole crop, white background included (the usual protocol of published tables).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dejavu.avatar import Avatar
from dejavu.device import resolve_device
from dejavu.errors import DejavuError
from dejavu.io import write_image
from dejavu.losses import fill_unseen
from dejavu.metrics import evaluate_images
from dejavu.track import load_tracking, track


def _own_tracking(avatar_dir: Path, image: Path, crop_size: int):
    """The avatar's own tracking (``tracking/``, which ``dejavu reconstruct`` writes) when it tracked this
    very image, else None. It is used as it is, whatever fit settings made it."""

    own = avatar_dir / "tracking"
    try:
        res = load_tracking(own)
    except DejavuError:
        return None
    return res if res.input_path == str(image.resolve()) and res.crop_size == crop_size else None


def evaluate_image(avatar_dir: str | Path, image: str | Path, out_dir: str | Path | None = None,
                   device: str = "auto", crop_size: int = 512, backend: str = "auto") -> dict:
    """Metrics of an avatar against one photo.

    Args:
        avatar_dir: an avatar folder (``dejavu reconstruct`` output or any Avatar).
        image: the photo (usually the one reconstructed from; any photo of the person works).
        out_dir: if given, write prediction.png, target.png, mask_face.png and mask_head.png there.
        device: auto | cpu | cuda. crop_size: aligned crop side (the paper evaluates at 512).
        backend: renderer backend (``dejavu.render.render``).

    Returns:
        {"image", "avatar", "crop_size", "metrics": {"face": {L1, PSNR, SSIM, LPIPS-alex, LPIPS-vgg}, "head": {...}}}
    """
    import tempfile


    dev = resolve_device(device)
    avatar = Avatar.load(avatar_dir)
    model = avatar.model(dev)
    with tempfile.TemporaryDirectory(prefix="dejavu-eval-") as tmp:
        result = _own_tracking(Path(avatar_dir), Path(image), crop_size)
        if result is None:
            result = track(image, Path(tmp) / "tracking", head=avatar.head, crop_size=crop_size, overlay=False,
                           progress=False)
        crop = result.load_crop(0)
        head_mask = result.load_mask(0).astype(np.float32)
        face_mask = result.load_mask(0, face=True).astype(np.float32)
        known = result.known(0)
    with torch.no_grad():
        g = model(**result.head_params(dev)[0].kwargs())
        w2c = torch.as_tensor(result.world_to_cam[:1], device=dev)
        K = torch.as_tensor(result.K[:1], device=dev)
        pred = g.render(w2c, K, crop_size, crop_size, backend=backend).rgb.clamp(0, 1).permute(0, 3, 1, 2)
    hm = torch.as_tensor(head_mask, device=dev)[None, None]
    fm = torch.as_tensor(face_mask, device=dev)[None, None]
    target = torch.as_tensor(crop, device=dev).permute(2, 0, 1)[None] * hm + (1 - hm)
    if known is not None:  # no error where the crop left the photo (repeated border), except under the jaw
        pred = fill_unseen(pred, target, torch.as_tensor(known, dtype=pred.dtype, device=dev)[None, None])
    metrics = evaluate_images(pred, target, {"face": fm, "head": hm, "image": None})
    if out_dir is not None:
        out = Path(out_dir)
        write_image(out / "prediction.png", pred[0].permute(1, 2, 0).cpu().numpy())
        write_image(out / "target.png", target[0].permute(1, 2, 0).cpu().numpy())
        write_image(out / "mask_face.png", face_mask[..., None])
        write_image(out / "mask_head.png", head_mask[..., None])
    return {"image": str(Path(image).resolve()), "avatar": str(Path(avatar_dir).resolve()), "crop_size": crop_size,
            "metrics": metrics}
