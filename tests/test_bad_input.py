"""Bad input against every command, as a careless or hostile user would give it.

Each case of :data:`CASES` runs the CLI in-process and asserts: the exit code, that the message is one
line naming the path or flag at fault, that no traceback is printed, and that the outputs made before
(a finished avatar, an earlier file) are intact. Cases that need a real process (SIGTERM, a kill during a
save) and the checks that no pickle is ever unpickled follow the table.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

import numpy as np
import pytest
import torch

from dejavu.avatar import JSON_NAME, TENSORS_NAME, Avatar
from dejavu.cli import main
from dejavu.errors import DejavuError

REPO = Path(__file__).resolve().parents[1]


def _avatar(S: int = 8, steps: int = 120) -> Avatar:
    g = torch.Generator().manual_seed(steps)
    return Avatar(head="procedural", uv_size=S, shape=torch.zeros(6), mean_offsets=torch.randn(13, S, S, generator=g),
                  training={"steps": steps, "seconds": 1.0})


def _digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (what 'intact' means)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclass
class World:
    """A folder with a finished avatar (``av``), an earlier export (``old.ply``), a photo and a few files."""

    root: Path
    av: Path = field(init=False)

    def __post_init__(self) -> None:
        self.av = self.root / "av"
        _avatar().save(self.av)
        (self.root / "old.ply").write_bytes(b"earlier export")
        (self.root / "a_file").write_text("not a folder")
        (self.root / "a_dir").mkdir()
        from PIL import Image

        Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(self.root / "photo.png")

    def p(self, name: str) -> str:
        return str(self.root / name)


def _edit_json(world: World, **fields) -> None:
    meta = json.loads((world.av / JSON_NAME).read_text())
    meta.update(fields)
    (world.av / JSON_NAME).write_text(json.dumps(meta))


def _nan_avatar(world: World) -> None:
    from safetensors.torch import load_file, save_file

    from dejavu.io import sha256_file

    tensors = load_file(str(world.av / TENSORS_NAME))
    tensors["mean_offsets"][0, 0, 0] = float("nan")
    save_file(tensors, str(world.av / TENSORS_NAME))
    _edit_json(world, tensors_sha256=sha256_file(world.av / TENSORS_NAME))


@dataclass
class Case:
    id: str
    argv: Callable[[World], list[str]]
    says: Callable[[World], str]  # a piece of the one-line message (the path or flag at fault)
    setup: Callable[[World], None] | None = None
    code: int = 2


CASES = [
    # outputs of the wrong kind, or nowhere a file can go
    Case("export -o folder", lambda w: ["export", str(w.av), "-o", w.p("a_dir")], lambda w: w.p("a_dir")),
    Case("export -o into the avatar", lambda w: ["export", str(w.av), "-o", str(w.av / TENSORS_NAME)],
         lambda w: "inside the avatar folder"),
    Case("export -o under a file", lambda w: ["export", str(w.av), "-o", w.p("a_file") + "/x.ply"],
         lambda w: "is a file, not a folder"),
    Case("export -o /proc", lambda w: ["export", str(w.av), "-o", "/proc/self/x.ply"], lambda w: "/proc"),
    Case("animate -o .png", lambda w: ["animate", str(w.av), "--expressions", "-o", w.p("x.png")],
         lambda w: "expected a .mp4 file"),
    Case("animate -o avatar folder", lambda w: ["animate", str(w.av), "--expressions", "-o", str(w.av)],
         lambda w: str(w.av)),
    Case("animate --resolution huge", lambda w: ["animate", str(w.av), "--expressions", "-o", w.p("x.mp4"),
                                                 "--resolution", "100000"], lambda w: "--resolution 100000"),
    Case("evaluate --json folder", lambda w: ["evaluate", str(w.av), "--image", w.p("photo.png"), "--json",
                                              w.p("a_dir")], lambda w: "--json " + w.p("a_dir")),
    Case("evaluate --frames file", lambda w: ["evaluate", str(w.av), "--image", w.p("photo.png"), "--json",
                                              w.p("m.json"), "--frames", w.p("a_file")],
         lambda w: "--frames " + w.p("a_file")),
    Case("evaluate --frames in avatar", lambda w: ["evaluate", str(w.av), "--image", w.p("photo.png"), "--json",
                                                   w.p("m.json"), "--frames", str(w.av / "frames")],
         lambda w: "inside the avatar folder"),
    Case("head info -o file", lambda w: ["head", "info", "--head", "procedural", "-o", w.p("a_file")],
         lambda w: w.p("a_file")),
    Case("head info --uv-size 100000", lambda w: ["head", "info", "--uv-size", "100000", "-o", w.p("h")],
         lambda w: "--uv-size 100000"),
    Case("head info --uv-size -4", lambda w: ["head", "info", "--uv-size", "-4", "-o", w.p("h")],
         lambda w: "--uv-size -4"),
    Case("bench --json folder", lambda w: ["bench", "render", "--json", w.p("a_dir")], lambda w: w.p("a_dir")),
    Case("track -o file", lambda w: ["track", w.p("photo.png"), "-o", w.p("a_file")], lambda w: w.p("a_file")),
    Case("track --fps nan", lambda w: ["track", w.p("photo.png"), "-o", w.p("t"), "--fps", "nan"],
         lambda w: "--fps nan"),
    Case("track --fps inf", lambda w: ["track", w.p("photo.png"), "-o", w.p("t"), "--fps", "inf"],
         lambda w: "--fps inf"),
    Case("train --run-dir file", lambda w: ["train", "recon", "--run-dir", w.p("a_file"), "--steps", "1"],
         lambda w: w.p("a_file")),
    # a finished avatar is replaced only with --force
    Case("reconstruct over a finished avatar", lambda w: ["reconstruct", w.p("photo.png"), "-o", str(w.av)],
         lambda w: "holds a finished avatar; pass --force"),
    Case("personalize over a finished avatar", lambda w: ["personalize", w.p("photo.png"), "-o", str(w.av)],
         lambda w: "holds a finished avatar; pass --force"),
    Case("reconstruct into a folder of other files", lambda w: ["reconstruct", w.p("photo.png"), "-o", str(w.root)],
         lambda w: "not part of an avatar"),
    Case("demo over an earlier demo", lambda w: ["demo", "-o", str(w.root)],
         lambda w: "holds a finished avatar; pass --force",
         setup=lambda w: _avatar().save(w.root / "astronaut_avatar")),
    # sizes and values that make no sense or cannot fit
    Case("reconstruct --uv-size 0", lambda w: ["reconstruct", w.p("photo.png"), "-o", w.p("n"), "--uv-size", "0"],
         lambda w: "--uv-size 0"),
    Case("reconstruct --uv-size 7", lambda w: ["reconstruct", w.p("photo.png"), "-o", w.p("n"), "--uv-size", "7"],
         lambda w: "--uv-size 7"),
    Case("reconstruct --uv-size 100000", lambda w: ["reconstruct", w.p("photo.png"), "-o", w.p("n"), "--uv-size",
                                                    "100000"], lambda w: "--uv-size 100000"),
    Case("personalize --resolution 10000", lambda w: ["personalize", w.p("photo.png"), "-o", w.p("n"),
                                                      "--resolution", "10000"], lambda w: "resolution 10000"),
    Case("personalize --minutes nan", lambda w: ["personalize", w.p("photo.png"), "-o", w.p("n"), "--minutes", "nan"],
         lambda w: "--minutes nan"),
    Case("personalize --minutes inf", lambda w: ["personalize", w.p("photo.png"), "-o", w.p("n"), "--minutes", "inf"],
         lambda w: "--minutes inf"),
    Case("personalize --uv-size 4", lambda w: ["personalize", w.p("photo.png"), "-o", w.p("n"), "--uv-size", "4"],
         lambda w: "--uv-size 4"),
    Case("personalize --side-silhouette -1", lambda w: ["personalize", w.p("photo.png"), "-o", w.p("n"),
                                                        "--side-silhouette", "-1"], lambda w: "--side-silhouette -1"),
    Case("demo --minutes nan", lambda w: ["demo", "-o", w.p("d"), "--minutes", "nan"], lambda w: "--minutes nan"),
    # broken avatars are refused, not rendered
    Case("avatar.json version abc", lambda w: ["export", str(w.av), "-o", w.p("x.ply")], lambda w: "'version'",
         setup=lambda w: _edit_json(w, version="abc")),
    Case("avatar.json uv_size abc", lambda w: ["export", str(w.av), "-o", w.p("x.ply")], lambda w: "'uv_size'",
         setup=lambda w: _edit_json(w, uv_size="abc")),
    Case("avatar.json settings not an object", lambda w: ["export", str(w.av), "-o", w.p("x.ply")],
         lambda w: "'settings'", setup=lambda w: _edit_json(w, settings=5)),
    Case("NaN avatar export", lambda w: ["export", str(w.av), "-o", w.p("x.ply")], lambda w: "NaN",
         setup=_nan_avatar),
    Case("NaN avatar animate", lambda w: ["animate", str(w.av), "--expressions", "-o", w.p("x.mp4")],
         lambda w: "NaN", setup=_nan_avatar),
    Case("NaN drive parameters", lambda w: ["export", str(w.av), "-o", w.p("x.ply"), "--params", w.p("d.json")],
         lambda w: "'expression' holds NaN",
         setup=lambda w: (w.root / "d.json").write_text('{"expression": [[NaN, 0, 0, 0, 0, 0]]}')),
    # help texts
    Case("bench --help", lambda w: ["bench", "--help"], lambda w: "", code=0),
    Case("bare bench", lambda w: ["bench"], lambda w: "", code=0),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_keeps_earlier_outputs(case: Case, tmp_path, capsys):
    world = World(tmp_path)
    if case.setup is not None:
        case.setup(world)
    before = _digest(tmp_path)
    try:
        code = main(case.argv(world))
    except SystemExit as exc:  # --help
        code = exc.code
    out, err = capsys.readouterr()
    assert code == case.code, err
    assert "Traceback" not in out + err
    if case.code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        assert lines[0].startswith("dejavu ") and ": error: " in lines[0]
        assert case.says(world) in lines[0]
    else:
        assert "usage:" in out
    assert _digest(tmp_path) == before, "an earlier output changed"


# -- full disk, OS errors during the run -------------------------------------------------------------

def test_too_little_free_space_is_refused_before_the_work(tmp_path, capsys, monkeypatch):
    world = World(tmp_path)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr("dejavu.outputs.shutil.disk_usage", lambda p: usage._replace(free=1 << 20))
    assert main(["export", str(world.av), "-o", world.p("x.ply")]) == 2
    err = capsys.readouterr().err
    assert world.p("x.ply") in err and "MB free" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.ply").exists()


def test_os_error_during_the_run_is_one_line(tmp_path, capsys, monkeypatch):
    world = World(tmp_path)
    target = world.p("x.ply")

    def full(path, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr("dejavu.export.write_arrays", full)
    assert main(["export", str(world.av), "-o", target]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"dejavu export: error: {target}: No space left on device; free some space or write elsewhere"


# -- resume -----------------------------------------------------------------------------------------

def test_resume_refuses_a_checkpoint_of_another_input(tmp_path, capsys):
    from dejavu.personalize.train import CHECKPOINT_NAME

    world = World(tmp_path)
    other = tmp_path / "other.png"
    shutil.copy(tmp_path / "photo.png", other)
    with open(other, "ab") as fh:
        fh.write(b"another input")
    payload = {"stage": 1, "step": 3, "stage1_steps": None, "delta": None, "blendmaps": None, "elapsed": 1.0,
               "history": [], "optim": None, "uv_size": 8, "n_frames": 1,
               "run": {"input": str(other), "input_sha256": hashlib.sha256(other.read_bytes()).hexdigest(),
                       "settings": {}, "train_frames": 1}}
    (world.av / "train").mkdir()
    torch.save(payload, world.av / "train" / CHECKPOINT_NAME)
    before = _digest(tmp_path)
    assert main(["personalize", world.p("photo.png"), "-o", str(world.av), "--resume", "--uv-size", "8",
                 "--head", "procedural"]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "content differs" in err and str(other) in err and len(err.strip().splitlines()) == 1
    assert _digest(tmp_path) == before


def test_resume_refuses_other_settings_and_frame_counts(tmp_path):
    from dejavu.personalize.pipeline import check_same_run
    from dejavu.personalize.train import TrainState

    run = {"input": "v.mp4", "input_sha256": "abc", "settings": {"resolution": 256}, "train_frames": 319}
    state = TrainState(run=run)
    check_same_run(state, dict(run), tmp_path)  # the same run goes on
    with pytest.raises(DejavuError, match="resolution 256"):
        check_same_run(state, {**run, "settings": {"resolution": 128}}, tmp_path)
    with pytest.raises(DejavuError, match="319 frames, this input gives 12"):
        check_same_run(state, {**run, "train_frames": 12}, tmp_path)


# -- memory bounds ----------------------------------------------------------------------------------

def test_a_run_that_cannot_fit_says_what_would(monkeypatch):
    from dejavu.limits import check_uv_size
    from dejavu.personalize.pipeline import check_run_memory
    from dejavu.personalize.config import PersonalizeConfig

    monkeypatch.setattr("dejavu.limits.available_memory", lambda: 3 << 30)
    cfg = PersonalizeConfig(resolution=512)
    with pytest.raises(DejavuError) as info:
        check_run_memory(cfg, 400)
    msg = str(info.value)
    assert msg.startswith("--resolution 512 on 400 frames: needs about") and "GB available" in msg
    fits = int(msg.split("--resolution ")[-1].split()[0])
    assert 16 <= fits < 512 and cfg.memory_bytes(400, fits) <= 0.85 * (3 << 30) < cfg.memory_bytes(400, fits + 2)
    check_run_memory(PersonalizeConfig(resolution=128), 100)
    with pytest.raises(DejavuError, match=r"--uv-size 2048: needs about .*; at most --uv-size \d+ fits"):
        check_uv_size(2048)


# -- silent wrong results ---------------------------------------------------------------------------

def test_16_bit_grayscale_is_read_by_its_range(tmp_path):
    from PIL import Image

    from dejavu.io import read_image

    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    img = read_image(tmp_path / "g16.png")
    assert img.shape == (8, 64, 3) and img.dtype == np.float32
    np.testing.assert_allclose(img[0, :, 0], ramp[0] / 65535.0, atol=1e-6)
    assert np.array_equal(img[..., 0], img[..., 2])


def test_truncated_video_is_reported(tmp_path, caplog):
    import imageio.v2 as imageio

    from dejavu.track.video import iter_frames

    path = tmp_path / "clip.mp4"
    writer = imageio.get_writer(path, fps=25, codec="libx264", macro_block_size=1, ffmpeg_log_level="error",
                                output_params=["-movflags", "+faststart"])
    rng = np.random.default_rng(0)
    for _ in range(60):
        writer.append_data((rng.random((32, 32, 3)) * 255).astype(np.uint8))
    writer.close()
    whole = path.read_bytes()
    path.write_bytes(whole[: int(len(whole) * 0.3)])
    with caplog.at_level("WARNING"):
        n = sum(1 for _ in iter_frames(path))
    assert 0 < n < 60
    assert f"only {n} of the 60 frames its header declares" in caplog.text and str(path) in caplog.text


def test_two_faces_are_logged(shared_data, tmp_path, caplog):
    pytest.importorskip("mediapipe")
    from dejavu.io import read_image, to_uint8
    from dejavu.track.landmarks import LandmarkDetector

    a = read_image(shared_data / "photos" / "mica_carell.jpg")[:474, :474]
    b = read_image(shared_data / "photos" / "sadtalker_people_0.png")[:474, :474]
    with caplog.at_level("INFO"), LandmarkDetector(video=False) as det:
        found = det(to_uint8(np.concatenate([a, b], axis=1)))
    assert found.n_faces == 2 and "2 faces found; tracking the largest" in caplog.text


# -- the avatar survives a save killed at any instant --------------------------------------------------

def test_avatar_save_killed_at_each_step_leaves_old_or_new(tmp_path, monkeypatch):
    from dejavu.io import clean_stale_parts

    old, new = _avatar(steps=120), _avatar(steps=4)
    real_replace, real_link, real_unlink = os.replace, os.link, Path.unlink

    class Killed(BaseException):
        pass

    for kill_at in range(8):
        folder = tmp_path / f"k{kill_at}"
        old.save(folder)
        calls = [0]

        def step(fn, calls=calls, kill_at=kill_at):
            def wrapped(*a, **k):
                calls[0] += 1
                if calls[0] > kill_at:
                    raise Killed()
                return fn(*a, **k)
            return wrapped

        monkeypatch.setattr(os, "replace", step(real_replace))
        monkeypatch.setattr(os, "link", step(real_link))
        monkeypatch.setattr(Path, "unlink", step(real_unlink))
        try:
            new.save(folder)
            finished = True
        except Killed:
            finished = False
        monkeypatch.setattr(os, "replace", real_replace)
        monkeypatch.setattr(os, "link", real_link)
        monkeypatch.setattr(Path, "unlink", real_unlink)
        # the pair on disk right after the kill is readable: the old avatar or the new one
        steps = Avatar.load(folder).training["steps"]
        assert steps in (120, 4) and (steps == 4 or not finished)
        # a kill leaves no trace once the next run has looked at the folder
        for part in folder.glob(".*.part"):  # as if the killed process were gone: rename to a dead pid
            part.rename(folder / part.name.replace(f"pid{os.getpid()}", "pid999999999"))
        from dejavu.outputs import check_output_dir

        check_output_dir(folder, kind="avatar", force=True)
        clean_stale_parts(folder)
        assert sorted(p.name for p in folder.iterdir()) == [JSON_NAME, TENSORS_NAME], kill_at
        assert Avatar.load(folder).training["steps"] == steps
        if finished:
            break
    assert finished, "the save never got to the end"


@pytest.mark.slow
def test_avatar_save_killed_by_sigkill_keeps_a_readable_avatar(tmp_path):
    """A real process, killed with SIGKILL while it saves avatars over and over."""
    folder = tmp_path / "av"
    _avatar(steps=1).save(folder)
    code = ("import sys, torch\nfrom dejavu.avatar import Avatar\nS = 96\ni = 2\nprint('go', flush=True)\n"
            "while True:\n"
            "    Avatar(head='procedural', uv_size=S, shape=torch.zeros(4), mean_offsets=torch.randn(13, S, S),"
            " blendmaps=None, training={'steps': i}).save(sys.argv[1]); i += 1\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for delay in (0.05, 0.13, 0.31):
        proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"go"
        time.sleep(delay)
        proc.kill()
        proc.wait()
        assert Avatar.load(folder).training["steps"] >= 1  # old or new, never neither
    from dejavu.outputs import check_output_dir

    check_output_dir(folder, kind="avatar", force=True)
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


# -- SIGTERM during tracking -------------------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_during_tracking_says_so_and_leaves_no_part_folder(tmp_path):
    pytest.importorskip("mediapipe")
    import imageio.v2 as imageio

    video = tmp_path / "noise.mp4"
    writer = imageio.get_writer(video, fps=25, codec="libx264", macro_block_size=1, ffmpeg_log_level="error")
    rng = np.random.default_rng(0)
    for _ in range(400):
        writer.append_data((rng.random((128, 128, 3)) * 255).astype(np.uint8))
    writer.close()
    out = tmp_path / "t"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = tmp_path / "stderr.txt"  # a file, not a pipe: the progress bars would fill a pipe nobody reads yet
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "dejavu", "track", str(video), "-o", str(out), "--head",
                                 "procedural"], stdout=subprocess.DEVNULL, stderr=fh, env=env)
        deadline = time.time() + 120
        while not list(tmp_path.glob(".t.*.part")) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, log.read_text()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    err = log.read_text()
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "dejavu track: terminated" in err
    assert not list(tmp_path.glob(".t.*")) and not out.exists()
    assert [line for line in err.splitlines() if "dejavu" in line] == [
        "dejavu track: terminated (finished outputs and checkpoints are kept)"]


# -- stale temporary files, file modes ---------------------------------------------------------------

def test_stale_parts_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    from dejavu.io import clean_stale_parts, part_prefix

    dead = tmp_path / ".avatar.pid999999999.abc.safetensors.part"
    dead_dir = tmp_path / ".tracking.pid999999999.xyz.part"
    dead_video = tmp_path / ".turntable.pid999999999.q1.mp4"  # write_video's ffmpeg file (no .part)
    live = tmp_path / f"{part_prefix('avatar')}def.json.part"
    old = tmp_path / ".tracking.old-123"  # an older run's name, without a pid
    foreign = tmp_path / ".config"
    for f in (dead, dead_video, live, old, foreign):
        f.write_text("x")
    dead_dir.mkdir()
    assert clean_stale_parts(tmp_path, "turntable") == [dead_video]
    removed = clean_stale_parts(tmp_path)
    assert sorted(removed) == sorted([dead, dead_dir, old]) and live.exists() and foreign.exists()


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_outputs_keep_the_users_umask(tmp_path, umask):
    from dejavu.io import write_image, write_json

    previous = os.umask(umask)
    try:
        write_json(tmp_path / "a.json", {"a": 1})
        write_image(tmp_path / "b.png", np.zeros((4, 4, 3), np.float32))
        _avatar().save(tmp_path / "av")
    finally:
        os.umask(previous)
    for path in (tmp_path / "a.json", tmp_path / "b.png", tmp_path / "av" / JSON_NAME, tmp_path / "av" / TENSORS_NAME):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path
    assert not list(tmp_path.rglob("*.part"))


def test_tracking_folder_keeps_the_users_umask(tmp_path, monkeypatch):
    """The tracker's temporary folder (mkdtemp: 0700) becomes the output with the umask's mode."""
    import dejavu.track.pipeline as track_mod

    def fake_run(input, tmp, *a, **k):
        (tmp / "x").write_text("1")
        return track_mod.TrackResult.__new__(track_mod.TrackResult)

    monkeypatch.setattr(track_mod, "_run", fake_run)
    monkeypatch.setattr(track_mod, "load_tracking", lambda d: None)
    previous = os.umask(0o027)
    try:
        photo = tmp_path / "p.png"
        from PIL import Image

        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
        track_mod.track(photo, tmp_path / "t", head="procedural", progress=False)
    finally:
        os.umask(previous)
    assert (tmp_path / "t").stat().st_mode & 0o777 == 0o750


# -- no pickle is ever unpickled ---------------------------------------------------------------------

class _Planted:
    """Unpickling this creates the marker file: proof that code ran."""

    marker: Path = Path("/nonexistent")

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def planted(tmp_path):
    _Planted.marker = tmp_path / "CODE_RAN"
    yield _Planted()
    assert not _Planted.marker.exists(), "a planted pickle was executed"


def _torch_pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"stage": 1, "net": obj, "x": obj}, path)


def _npz_pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez(fh, __meta__=np.array([obj], dtype=object), expression=np.array([obj], dtype=object))


def test_planted_personalization_checkpoint(tmp_path, planted):
    from dejavu.personalize.train import CHECKPOINT_NAME, load_checkpoint

    _torch_pickle(tmp_path / CHECKPOINT_NAME, planted)
    with pytest.raises(DejavuError, match="unreadable checkpoint"):
        load_checkpoint(tmp_path, 8)


def test_planted_recon_checkpoint(tmp_path, planted, capsys):
    run = tmp_path / "run"
    _torch_pickle(run / "checkpoint.pt", planted)
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"model": {"head": "procedural", "uv_size": 32, "base_channels": 8,
                                            "output_prior": False}}))
    assert main(["train", "recon", "--config", str(config), "--run-dir", str(run), "--resume", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert str(run / "checkpoint.pt") in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_planted_avatar_tensors(tmp_path, planted):
    import pickle

    from dejavu.io import sha256_file

    _avatar().save(tmp_path)
    (tmp_path / TENSORS_NAME).write_bytes(pickle.dumps({"shape": planted}))
    meta = json.loads((tmp_path / JSON_NAME).read_text())
    meta["tensors_sha256"] = sha256_file(tmp_path / TENSORS_NAME)
    (tmp_path / JSON_NAME).write_text(json.dumps(meta))
    with pytest.raises(DejavuError, match="not a readable safetensors file"):
        Avatar.load(tmp_path)


def test_planted_tracking(tmp_path, planted):
    from dejavu.track import load_tracking

    _npz_pickle(tmp_path / "tracking.npz", planted)
    with pytest.raises(DejavuError, match="not a readable tracking file"):
        load_tracking(tmp_path)


def test_planted_drive_parameters(tmp_path, planted):
    from dejavu.drive.sources import load_drive

    _npz_pickle(tmp_path / "d.npz", planted)
    with pytest.raises(DejavuError, match="not a readable .npz file"):
        load_drive(tmp_path / "d.npz", "procedural")


def test_planted_recon_data_shard(tmp_path, planted):
    from dejavu.recon.data import MultiViewSet

    _npz_pickle(tmp_path / "shard_00000.npz", planted)
    with pytest.raises(DejavuError, match="not a readable recon data shard"):
        MultiViewSet.load(tmp_path)


def test_planted_caches(tmp_path, planted):
    """Head-model caches and landmark embeddings (npz), network weights and LPIPS caches (safetensors)."""
    import pickle

    from dejavu.head.base import HeadAssets
    from dejavu.head.landmark_embedding import load_refined_embedding
    from dejavu.recon.train import load_weights

    _npz_pickle(tmp_path / "head.npz", planted)
    with pytest.raises(ValueError):  # numpy refuses object arrays (allow_pickle=False)
        HeadAssets.load(tmp_path / "head.npz")
    _npz_pickle(tmp_path / "emb.npz", planted)
    try:
        load_refined_embedding(np.zeros((1, 3), np.int64), tmp_path / "emb.npz")
    except (ValueError, KeyError, DejavuError):
        pass
    (tmp_path / "w.safetensors").write_bytes(pickle.dumps({"w": planted}))
    with pytest.raises(DejavuError, match="not a readable safetensors file"):
        load_weights(tmp_path / "w.safetensors")


def test_no_unsafe_load_in_the_package():
    """Every torch.load passes weights_only=True and every np.load refuses pickles (by default or by flag)."""
    offenders = []
    for path in sorted((REPO / "dejavu").rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if "torch.load(" in line and "weights_only=True" not in line:
                offenders.append(f"{path.name}:{n}")
            if "allow_pickle=True" in line or "pickle.load(" in line or "pickle.loads(" in line:
                offenders.append(f"{path.name}:{n}")
    assert offenders == []
