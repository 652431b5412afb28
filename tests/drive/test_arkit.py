"""ARKit blendshape files: Live Link Face CSV, named-column CSV, LAM JSON; by name, never by position."""

from __future__ import annotations

import numpy as np
import pytest

from dejavu.drive.arkit import (ARKIT_NAMES, read_blendshape_csv, read_blendshape_json, read_live_link_csv,

                                resample_uniform)
from dejavu.errors import DejavuError
from tests.drive.conftest import blendshape_json, live_link_csv


def _weights(rng, T=90):
    return rng.uniform(0, 1, size=(T, 52)).astype(np.float32)


def test_live_link_round_trip_with_head_and_eyes(tmp_path, rng):
    w = _weights(rng)
    head = rng.normal(scale=0.2, size=(90, 3))
    eyes = rng.normal(scale=0.1, size=(90, 6))
    live_link_csv(tmp_path / "a.csv", w, fps=60, head=head, eyes=eyes)
    seq = read_live_link_csv(tmp_path / "a.csv")
    assert seq.fps == 60 and len(seq) == 90 and seq.missing == []
    np.testing.assert_allclose(seq.weights, w, atol=1e-5)
    np.testing.assert_allclose(seq.head_pose, head, atol=1e-5)
    np.testing.assert_allclose(seq.eye_angles, eyes, atol=1e-5)


def test_timecode_rate_below_the_capture_rate(tmp_path, rng):
    w = _weights(rng, 130)
    live_link_csv(tmp_path / "a.csv", w, fps=60, tc_rate=30)  # 60 fps frames stamped FF.000 / FF.500 at 30
    assert "00:00.500" in (tmp_path / "a.csv").read_text() or ".500" in (tmp_path / "a.csv").read_text()
    seq = read_live_link_csv(tmp_path / "a.csv")
    assert seq.fps == 60 and len(seq) == 130
    np.testing.assert_allclose(seq.weights, w, atol=1e-5)


def test_columns_matched_by_name_in_any_order_with_extras(tmp_path, rng):
    w = _weights(rng, 40)
    names = ["".join([n[0].upper(), n[1:]]) for n in ARKIT_NAMES]
    order = list(rng.permutation(names)) + ["SomethingElse"]
    live_link_csv(tmp_path / "a.csv", w, fps=30, order=order, extra=True)
    seq = read_live_link_csv(tmp_path / "a.csv")
    np.testing.assert_allclose(seq.weights, w, atol=1e-5)
    assert seq.fps == 30 and seq.head_pose is None


def test_dropped_frames_are_resampled_on_the_capture_rate(tmp_path, rng):
    w = np.linspace(0, 1, 120)[:, None].repeat(52, 1).astype(np.float32)
    live_link_csv(tmp_path / "a.csv", w, fps=60)
    lines = (tmp_path / "a.csv").read_text().splitlines()
    del lines[50:53]  # three frames lost
    (tmp_path / "b.csv").write_text("\n".join(lines) + "\n")
    seq = read_live_link_csv(tmp_path / "b.csv")
    assert seq.fps == 60 and len(seq) == 120
    np.testing.assert_allclose(seq.weights[:, 0], np.linspace(0, 1, 120), atol=1e-5)


def test_missing_units_are_zero_and_listed(tmp_path, rng):
    w = _weights(rng, 10)
    keep = [n for n in ARKIT_NAMES if n not in ("jawOpen", "tongueOut")]
    header = ",".join(keep)
    rows = [",".join(f"{w[t, ARKIT_NAMES.index(n)]:.5f}" for n in keep) for t in range(10)]
    (tmp_path / "a.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    seq = read_blendshape_csv(tmp_path / "a.csv")
    assert sorted(seq.missing) == ["jawOpen", "tongueOut"] and seq.fps == 30.0
    assert np.all(seq.weights[:, ARKIT_NAMES.index("jawOpen")] == 0)
    np.testing.assert_allclose(seq.weights[:, 0], w[:, 0], atol=1e-5)


def test_mediapipe_csv_with_neutral_and_time(tmp_path, rng):
    mp = ["_neutral"] + [n for n in ARKIT_NAMES if n != "tongueOut"]
    w = rng.uniform(0, 1, size=(25, len(mp)))
    times = np.arange(25) / 25.0
    text = "time," + ",".join(mp) + "\n" + "\n".join(
        f"{t:.4f}," + ",".join(f"{x:.5f}" for x in row) for t, row in zip(times, w)) + "\n"
    (tmp_path / "mp.csv").write_text(text)
    seq = read_blendshape_csv(tmp_path / "mp.csv")
    assert seq.fps == 25 and seq.missing == ["tongueOut"]
    got = seq.weights[:, ARKIT_NAMES.index("browDownLeft")]
    np.testing.assert_allclose(got, w[:, mp.index("browDownLeft")], atol=1e-5)


def test_lam_json(tmp_path, rng):
    w = _weights(rng, 12)
    names = list(rng.permutation(ARKIT_NAMES))
    blendshape_json(tmp_path / "a.json", w[:, [ARKIT_NAMES.index(n) for n in names]], names=names, fps=30)
    seq = read_blendshape_json(tmp_path / "a.json")
    assert seq.fps == 30 and len(seq) == 12
    np.testing.assert_allclose(seq.weights, w, atol=1e-6)


@pytest.mark.parametrize("text,match", [
    ("Timecode,BlendShapeCount,EyeBlinkLeft\n", "no frames"),
    ("Timecode,BlendShapeCount,Foo,Bar\n00:00:00:01.000,2,0.1,0.2\n", "no ARKit blendshape columns"),
    ("Timecode,BlendShapeCount,EyeBlinkLeft\n00:00:00:01.000,1,abc\n", "not a numeric table"),
    ("Timecode,BlendShapeCount,EyeBlinkLeft,JawOpen\n00:00:00:01.000,1,0.5\n", "rows have|not a numeric"),
    ("Timecode,EyeBlinkLeft,eyeblinkleft\n00:00:00:01.000,1,1\n", "more than once"),
])
def test_live_link_errors_name_the_file(tmp_path, text, match):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(DejavuError, match=match) as info:
        read_live_link_csv(tmp_path / "bad.csv")
    assert "bad.csv" in str(info.value)


@pytest.mark.parametrize("obj,match", [
    ({"names": ARKIT_NAMES[:2], "frames": []}, "no frames"),
    ({"names": list(ARKIT_NAMES[:2]), "frames": [{"weights": [0.1]}]}, "shape"),
    ({"names": list(ARKIT_NAMES[:2]), "frames": [{"w": [0.1, 0.2]}]}, "needs 'weights'"),
    ({"names": "jawOpen", "frames": [{"weights": [0.1]}]}, "'names' must be a list"),
])
def test_json_errors(tmp_path, obj, match):
    import json

    (tmp_path / "bad.json").write_text(json.dumps(obj))
    with pytest.raises(DejavuError, match=match):
        read_blendshape_json(tmp_path / "bad.json")


def test_resample_matches_np_interp(rng):
    times = np.cumsum(rng.uniform(0.01, 0.03, size=40))
    values = rng.normal(size=(40, 3))
    out = resample_uniform(times, values, 60.0)
    grid = times[0] + np.arange(len(out)) / 60.0
    for c in range(3):
        np.testing.assert_allclose(out[:, c], np.interp(grid, times, values[:, c]), atol=1e-12)


def test_vectorised_parse_matches_the_rowwise_reference(tmp_path):
    from dejavu.bench.drive import write_live_link_take
    from dejavu.drive.arkit import HEAD_COLUMNS, read_live_link_csv_rowwise

    T = write_live_link_take(tmp_path / "take.csv", seconds=2.5, fps=60)
    seq = read_live_link_csv(tmp_path / "take.csv")
    times, values, names = read_live_link_csv_rowwise(tmp_path / "take.csv")
    assert len(seq) == T == len(values) and seq.fps == 60
    np.testing.assert_allclose(np.diff(times), 1 / 60, atol=1e-9)
    for i, name in enumerate(ARKIT_NAMES):
        np.testing.assert_allclose(seq.weights[:, i], values[:, names.index(name.lower())], atol=1e-6)
    for i, name in enumerate(HEAD_COLUMNS):
        np.testing.assert_allclose(seq.head_pose[:, i], values[:, names.index(name)], atol=1e-6)
