"""``reconstruct`` and ``evaluate_image`` end to end (tiny random network, procedural head), and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dejavu.errors import DejavuError
from dejavu.recon.network import ReconNet
from dejavu.recon.train import save_weights


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    torch.manual_seed(0)
    return save_weights(tmp_path_factory.mktemp("w") / "w.safetensors", ReconNet(32, 4), "procedural")


def test_network_input_whitens_background():
    from dejavu.recon.predict import network_input

    crop = np.full((4, 4, 3), 0.25, np.float32)
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    x = network_input(crop, mask)
    assert x.shape == (1, 3, 4, 4)
    assert float(x[0, 0, 0, 0]) == 1.0 and float(x[0, 0, 1, 1]) == -0.5


def test_reconstruct_and_evaluate(shared_data, tiny_weights, tmp_path):
    from dejavu.avatar import Avatar
    from dejavu.recon.evaluate import evaluate_image
    from dejavu.recon.predict import reconstruct

    photo = shared_data / "photos" / "skimage_astronaut.png"
    rec = reconstruct(photo, tmp_path / "av", weights=tiny_weights, crop_size=128, turntable=False,
                      backend="reference", device="cpu", uv_size=48, photo_iterations=1)
    for key in ("avatar", "reconstruction", "ply"):
        assert rec.files[key].exists(), key
    avatar = Avatar.load(tmp_path / "av")
    assert avatar.head == "procedural" and avatar.uv_size == 48 and avatar.stage == "mean"
    assert avatar.settings["network_uv_size"] == 32 and avatar.settings["photo_texture"]["seen_fraction"] > 0.1
    assert avatar.global_delta is None and avatar.blendmaps is None
    assert torch.allclose(avatar.mean_offsets, rec.avatar.mean_offsets)

    out = evaluate_image(tmp_path / "av", photo, tmp_path / "eval", device="cpu", crop_size=128, backend="reference")
    m = out["metrics"]
    assert set(m) == {"face", "head", "image"}
    assert set(m["face"]) == {"L1", "PSNR", "SSIM", "LPIPS-alex", "LPIPS-vgg"}
    assert 0.0 <= m["head"]["L1"] <= 1.0 and np.isfinite(m["face"]["PSNR"])
    assert (tmp_path / "eval" / "prediction.png").is_file() and (tmp_path / "eval" / "mask_face.png").is_file()
    json.dumps(out)


def test_turntable_frames_orbit_the_head():
    from dejavu.gaussians.uvmap import Gaussians
    from dejavu.recon.predict import iter_turntable

    # one opaque red blob left of the centre (+X is the subject's left = image right at yaw 0)
    g = Gaussians(means=torch.tensor([[[0.05, 0.0, 0.0]]]), quats=torch.tensor([[[1.0, 0, 0, 0]]]),
                  scales=torch.full((1, 1, 3), 0.02), opacities=torch.ones(1, 1), colors=torch.tensor([[[1.0, 0, 0]]]))
    frames = np.stack(list(iter_turntable(g, 1.0, torch.zeros(3), size=32, n_frames=4, max_yaw_deg=60.0,
                                          backend="reference")))
    assert frames.shape == (4, 32, 32, 3)
    cols = [np.argmin(f[..., 1].min(0)) for f in frames]  # column where the blob is reddest
    assert cols[0] > 16  # yaw 0: the blob is right of the centre
    # at +-60 deg the blob's offset from the axis shrinks to cos(60) of it; half way round it is back
    assert cols[1] < cols[0] and cols[3] < cols[0] and abs(cols[2] - cols[0]) <= 1


def test_wrong_head_for_weights(shared_data, tiny_weights, tmp_path):
    from dejavu.recon.predict import reconstruct

    with pytest.raises(DejavuError, match="trained on head 'procedural'"):
        reconstruct(shared_data / "photos" / "skimage_astronaut.png", tmp_path / "x", head="builtin",
                    weights=tiny_weights, device="cpu")


def test_cli_errors(tmp_path, tiny_weights, capsys):
    from dejavu.cli import main

    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    assert main(["reconstruct", str(bad), "-o", str(tmp_path / "o"), "--weights", str(tiny_weights)]) == 2
    assert "not_an_image.png" in capsys.readouterr().err
    assert main(["train", "recon", "--config", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: no such file" in capsys.readouterr().err


def test_bench_reconstruct(shared_data, tmp_path, capsys):
    """``dejavu bench reconstruct``: fresh-process timings and metrics, photo vs network colours."""
    from dejavu.cli import main

    out = tmp_path / "bench.json"
    photo = shared_data / "photos" / "mica_carell.jpg"
    assert main(["bench", "reconstruct", str(photo), "--repeats", "1", "--no-turntable", "--out", str(tmp_path / "av"),
                 "--json", str(out)]) == 0
    row = json.loads(out.read_text())["photos"][0]
    assert row["photo_colors"]["seconds"] > 0 and row["network_colors"]["seconds"] > 0
    # Reading the colours off the photo is the point: far closer to the photo than the network's colours.
    assert row["face_psnr_gain_db"] > 3.0
    assert "face PSNR" in capsys.readouterr().out


def test_evaluate_takes_no_error_outside_the_photo(shared_data, tmp_path):
    """A photo with the top of the head cut off (the shipped network, whose head reaches above the cut): where
    the crop left the photo, the prediction is scored as equal to the target (repeated border pixels, not
    the person); elsewhere it is the render."""
    import imageio.v2 as imageio

    from dejavu.io import read_image, write_image
    from dejavu.recon.evaluate import evaluate_image
    from dejavu.recon.predict import reconstruct
    from dejavu.track import load_tracking
    from dejavu.track.result import save_tracking

    photo = tmp_path / "cut.png"
    write_image(photo, read_image(shared_data / "photos" / "skimage_astronaut.png")[70:])
    reconstruct(photo, tmp_path / "av", crop_size=128, turntable=False, device="cpu", photo_iterations=1)
    out = evaluate_image(tmp_path / "av", photo, tmp_path / "eval", device="cpu", crop_size=128)
    pred = imageio.imread(tmp_path / "eval" / "prediction.png").astype(int)
    target = imageio.imread(tmp_path / "eval" / "target.png").astype(int)
    unseen = ~load_tracking(tmp_path / "av" / "tracking").inside_source(0)
    assert unseen[0].all() and not unseen[-1].any()
    assert np.abs(pred[unseen] - target[unseen]).max() <= 1
    # the same avatar scored without knowing where the photo ends: its scalp above the cut counts as error
    res = load_tracking(tmp_path / "av" / "tracking")
    res.source_hw = None
    save_tracking(res, tmp_path / "av" / "tracking")
    blind = evaluate_image(tmp_path / "av", photo, None, device="cpu", crop_size=128)
    assert blind["metrics"]["image"]["PSNR"] < out["metrics"]["image"]["PSNR"] - 0.1
