"""Rasteriser, jaw-line mask, overlay dots and video decoding on tiny synthetic inputs."""

from __future__ import annotations

import numpy as np
import pytest

from dejavu.errors import DejavuError
from dejavu.track.masks import JAW_LINE, below_jaw, head_masks, rasterize_labels
from dejavu.track.overlay import draw_overlay
from dejavu.track.video import iter_frames, probe


def test_rasterizer_pixel_centres_and_depth_order():
    # a square [1, 3] x [1, 3] covers exactly the pixel centres 1.5 and 2.5: pixels 1..2
    xy = np.array([[1, 1], [3, 1], [1, 3], [3, 3]], np.float32)
    faces = np.array([[0, 1, 2], [1, 3, 2]])
    labels, face_idx = rasterize_labels(xy, np.ones(4), faces, np.array([7, 7]), 5, 5)
    expected = np.zeros((5, 5), bool)
    expected[1:3, 1:3] = True
    assert np.array_equal(labels == 7, expected) and set(np.unique(face_idx[expected])) <= {0, 1}
    # two overlapping triangles: the nearer (smaller z) wins whatever the order
    xy2 = np.concatenate([xy, xy])
    z = np.array([2, 2, 2, 2, 1, 1, 1, 1], np.float32)
    tri = np.array([[0, 1, 2], [4, 5, 6]])
    lab, _ = rasterize_labels(xy2, z, tri, np.array([1, 2]), 5, 5)
    assert (lab[lab >= 0] == 2).all()
    lab_back, _ = rasterize_labels(xy2, np.array([1, 1, 1, 1, 2, 2, 2, 2], np.float32), tri, np.array([1, 2]), 5, 5)
    assert (lab_back[lab_back >= 0] == 1).all()


def test_below_jaw_removes_neck_keeps_face():
    lm = np.zeros((478, 2))
    t = np.linspace(-1, 1, len(JAW_LINE))
    lm[JAW_LINE] = np.stack([50 + 30 * t, 60 + 20 * (1 - t ** 2)], 1)  # a U-shaped jaw, chin at y=80
    lm[10], lm[152] = (50, 20), (50, 80)
    m = below_jaw(lm, 128, 100, shoulder_drop=0.3)
    assert m[90, 50] and not m[50, 50]  # under the chin / on the face
    assert not m[70, 5] and m[110, 5]  # beside the face above the shoulder line (80 + 0.3 * 60) / below it


def test_below_jaw_of_a_turned_head_cuts_no_strip_out_of_the_cheek():
    """Turned to its side, the far half of the jaw line projects onto the cheek and runs back the way it
    came: only what lies under the lowest crossing of each column is under the jaw."""
    lm = np.zeros((478, 2))
    n = len(JAW_LINE)
    near = np.stack([np.linspace(20, 60, n // 2 + 1), np.linspace(60, 85, n // 2 + 1)], 1)  # ear -> chin
    far = np.stack([np.linspace(60, 52, n - n // 2), np.linspace(85, 62, n - n // 2)], 1)[1:]  # back onto the cheek
    lm[JAW_LINE] = np.concatenate([near, np.concatenate([far, far[-1:]])])[:n]
    lm[10], lm[152] = (40, 10), (60, 85)
    m = below_jaw(lm, 128, 100, shoulder_drop=0.3)
    face_rows = np.arange(30, 60)
    assert not m[face_rows, 52:61].any()  # the cheek above the jaw stays in the head
    assert m[95, 55] and m[80, 25]  # under the chin / under the near jaw


def test_head_mask_keeps_the_cheek_past_the_end_of_a_turned_jaw_line():
    """The far jaw line ends at the mesh's silhouette and runs up the cheek's edge: the columns between the
    lower jaw's end and that edge are crossed only by the steep part, and the person's cheek (wider than
    the mesh) must not lose a strip there; the neck under the chin is still cut."""
    lm = np.zeros((478, 2))
    n = len(JAW_LINE)
    half = n // 2 + 1
    near = np.stack([np.linspace(20, 60, half), np.linspace(60, 85, half)], 1)  # ear -> chin
    far = np.stack([np.r_[np.linspace(60, 70, n - half - 1), 73.0], np.r_[np.linspace(85, 75, n - half - 1), 30.0]], 1)
    lm[JAW_LINE] = np.concatenate([near, far])
    lm[10], lm[152] = (40, -15), (60, 85)  # forehead-to-chin 100 px
    person = np.ones((128, 100))
    labels = np.zeros((128, 100), np.int32)  # the mesh's face everywhere: no off-mesh cut
    assert below_jaw(lm, 128, 100)[60, 71:73].all()  # the line alone cuts the strip ...
    head, _ = head_masks(person, labels, lm)
    assert head[40:75, 71:73].all()  # ... the head mask keeps it
    assert not head[95, 40:60].any()  # under the chin


def test_overlay_draws_dots():
    crop = np.zeros((16, 16, 3), np.uint8)
    out = draw_overlay(crop, np.full((16, 16), -1), np.zeros(0), detected=np.array([[8.0, 8.0]]))
    assert (out[7:9, 7:9] == (0, 255, 0)).all() and out.sum() == 4 * 255


@pytest.fixture()
def small_video(tmp_path):
    from dejavu.io import write_video

    frames = [np.full((32, 48, 3), i * 20, np.uint8) for i in range(10)]
    return write_video(tmp_path / "v.mp4", frames, fps=10.0)


def test_video_decoding_fps_and_max_frames(small_video):
    info = probe(small_video)
    assert info.kind == "video" and info.fps == 10.0 and info.size == (48, 32)
    frames = list(iter_frames(small_video))
    assert len(frames) == 10 and frames[0].image.shape == (32, 48, 3)
    assert abs(int(frames[5].image.mean()) - 100) <= 3
    sub = list(iter_frames(small_video, fps=5.0, max_frames=3))
    assert [f.index for f in sub] == [0, 2, 4] and np.allclose([f.time for f in sub], [0, 0.2, 0.4])


def test_unsupported_and_empty_inputs(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DejavuError, match="a.txt: not an image or video"):
        probe(tmp_path / "a.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DejavuError, match="empty: folder holds no images"):
        probe(tmp_path / "empty")


def test_rotated_video_size_warning_is_dropped(caplog):
    """imageio-ffmpeg warns when a phone video's display rotation swaps the decoded size; that is intended."""
    import logging

    logger = logging.getLogger("imageio_ffmpeg")
    with caplog.at_level(logging.WARNING, logger="imageio_ffmpeg"):
        logger.warning("The frame size for reading (1080, 1920) is different from the source frame size (1920, 1080).")
        logger.warning("another warning")
    assert [r.getMessage() for r in caplog.records] == ["another warning"]
