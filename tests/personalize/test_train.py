"""The two stages recover a known avatar from its synthetic video, and an interrupted run resumes."""

from __future__ import annotations

import pytest
import torch
from conftest import BACKEND, tiny_config

from dejavu.gaussians import channels as ch
from dejavu.model.blend import fit_pca_basis
from dejavu.personalize.train import Trainer, load_checkpoint, render_frames


def _start(true: torch.Tensor) -> torch.Tensor:
    """The truth with its colours replaced by mid grey: what training must recover."""
    init = true.clone()
    init[ch.COLOR] = 1.0
    return init


def _render(head, uvmap, frames, mean, fn) -> torch.Tensor:
    """Frames rendered with offsets ``mean + fn(expression)``."""

    def gaussians(b):
        verts = head(**frames.identity(), **b["params"].kwargs())
        return uvmap.gaussians(verts, mean[None] + fn(b["params"].expression))

    return render_frames(frames, gaussians, torch.device("cpu"), backend=BACKEND)


def _psnr(head, uvmap, frames, mean, fn) -> float:
    pred = _render(head, uvmap, frames, mean, fn)
    target = frames.images.permute(0, 3, 1, 2).float() / 255
    return float(-10 * torch.log10(((pred - target) ** 2).mean()))


def test_training_recovers_colours(tiny, tiny_frames, tmp_path):
    head, uvmap, true = tiny
    init = _start(true)
    cfg = tiny_config(steps=16, preview_every=8)
    blend = fit_pca_basis(tiny_frames.params.expression, k=cfg.n_blendmaps)
    trainer = Trainer(head, uvmap, tiny_frames, init, blend, cfg, tmp_path, torch.device("cpu"), progress=False)
    before = _psnr(head, uvmap, tiny_frames, init, lambda e: torch.zeros(1, 13, 16, 16))
    state = trainer.run()
    assert state.step == 16 and state.stage1_steps == 5 and state.stage == 3
    after = _psnr(head, uvmap, tiny_frames, init,
                  lambda e: torch.einsum("bk,kchw->bchw", blend.weights(e), state.blendmaps))
    assert after > before + 3.0, (before, after)
    losses = [h["huber"] for h in state.history]
    assert losses[-1] < 0.5 * losses[0]
    assert (tmp_path / "previews" / "step_000008.png").is_file()
    # stage 2 started from copies of the stage-1 delta and then specialised them
    assert not torch.allclose(state.blendmaps[0], state.blendmaps[1])


@pytest.mark.parametrize("lr_pose", [0.0, 0.01])
def test_interrupted_run_resumes(tiny, tiny_frames, tmp_path, monkeypatch, lr_pose):
    head, uvmap, true = tiny
    init = _start(true)
    cfg = tiny_config(steps=8, lr_pose=lr_pose)
    blend = fit_pca_basis(tiny_frames.params.expression, k=cfg.n_blendmaps)
    make = lambda d: Trainer(head, uvmap, tiny_frames, init, blend, cfg, d, torch.device("cpu"), progress=False)  # noqa: E731
    full = make(tmp_path / "a").run()

    calls = {"n": 0}
    original = Trainer.loss

    def flaky(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 6:  # die during step 6 (stage 2); the last checkpoint is at step 4
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(Trainer, "loss", flaky)
    with pytest.raises(KeyboardInterrupt):
        make(tmp_path / "b").run()
    monkeypatch.setattr(Trainer, "loss", original)
    state = load_checkpoint(tmp_path / "b", uvmap.size)
    assert state is not None and state.step == 4 and state.stage == 2
    resumed = make(tmp_path / "b").run(state)
    assert resumed.step == 8
    torch.testing.assert_close(resumed.blendmaps, full.blendmaps, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(resumed.delta, full.delta, atol=1e-4, rtol=1e-4)
    if lr_pose:
        torch.testing.assert_close(resumed.pose, full.pose, atol=1e-5, rtol=1e-4)
        # resuming under other settings is refused, naming the checkpoint
        from dejavu.errors import DejavuError

        state = load_checkpoint(tmp_path / "b", uvmap.size)  # saved with the pose corrections' Adam state
        state.step, state.pose = 4, None
        plain = Trainer(head, uvmap, tiny_frames, init, blend, tiny_config(steps=8), tmp_path / "b",
                        torch.device("cpu"), progress=False)
        with pytest.raises(DejavuError, match="checkpoint.pt: made with other settings"):
            plain.run(state)


def test_checkpoint_for_other_uv_size_is_refused(tiny, tiny_frames, tmp_path):
    from dejavu.errors import DejavuError

    head, uvmap, true = tiny
    cfg = tiny_config(steps=2, checkpoint_every=1)
    Trainer(head, uvmap, tiny_frames, true, fit_pca_basis(tiny_frames.params.expression, k=3), cfg, tmp_path,
            torch.device("cpu"), progress=False).run()
    with pytest.raises(DejavuError, match="UV size"):
        load_checkpoint(tmp_path, 32)
    (tmp_path / "checkpoint.pt").write_bytes(b"junk")
    with pytest.raises(DejavuError, match="unreadable checkpoint"):
        load_checkpoint(tmp_path, uvmap.size)


def test_ssim_term_is_optional_and_raises_ssim(tiny, tiny_frames, tmp_path):
    """w_ssim adds a D-SSIM term (0 = the paper's losses, no term)."""
    from dejavu.metrics.image import ssim

    head, uvmap, true = tiny
    init = _start(true)
    blend = fit_pca_basis(tiny_frames.params.expression, k=3)
    scores = {}
    for w in (0.0, 0.5):
        cfg = tiny_config(steps=12, preview_every=0, w_ssim=w)
        trainer = Trainer(head, uvmap, tiny_frames, init, blend, cfg, tmp_path / str(w), torch.device("cpu"),
                          progress=False)
        state = trainer.run()
        assert ("ssim" in state.history[-1]) == (w > 0)
        pred = _render(head, uvmap, tiny_frames, init,
                       lambda e: torch.einsum("bk,kchw->bchw", blend.weights(e), state.blendmaps))
        scores[w] = float(ssim(pred, tiny_frames.images.permute(0, 3, 1, 2).float() / 255).mean())
    assert scores[0.5] >= scores[0.0] - 0.01


def test_alpha_term_pulls_the_silhouette_to_the_mask(tiny, tiny_frames, tmp_path):
    """w_alpha adds an L1 term between the render's opacity and the head mask: starting from
    half-transparent Gaussians, it brings the rendered alpha closer to the mask than colour alone."""
    from dejavu.personalize.train import Trainer

    import dataclasses

    head, uvmap, true = tiny
    # masks: where the true avatar is opaque
    idx = torch.arange(len(tiny_frames))
    ref = Trainer(head, uvmap, tiny_frames, true, fit_pca_basis(tiny_frames.params.expression, k=3), tiny_config(),
                  tmp_path / "ref", torch.device("cpu"), progress=False)
    with torch.no_grad():
        _, true_alpha = ref.render_batch(tiny_frames.batch(idx, "cpu"), torch.zeros(1, 13, uvmap.size, uvmap.size), idx)
    masks = ((true_alpha > 0.5).permute(0, 2, 3, 1) * 255).to(torch.uint8)
    frames = dataclasses.replace(tiny_frames, masks=masks)
    init = true.clone()
    init[ch.OPACITY] -= 3.0  # logits: most Gaussians nearly transparent
    blend = fit_pca_basis(frames.params.expression, k=3)
    errors = {}
    for w in (0.0, 2.0):
        cfg = tiny_config(steps=12, preview_every=0, w_alpha=w, w_lpips=0.0)
        trainer = Trainer(head, uvmap, frames, init, blend, cfg, tmp_path / str(w), torch.device("cpu"),
                          progress=False)
        state = trainer.run()
        assert ("alpha" in state.history[-1]) == (w > 0)
        with torch.no_grad():
            b = frames.batch(idx, "cpu")
            _, alpha = trainer.render_batch(b, trainer.delta_for(2, state.blendmaps, b["params"].expression), idx)
        errors[w] = float((alpha - b["masks"]).abs().mean())
    assert errors[2.0] < errors[0.0], errors


@pytest.mark.parametrize("override, message", [
    ({"blend_temperature": 0.0}, "blend_temperature 0.0: expected a positive number"),
    ({"blend_scheme": "softmax"}, "blend_scheme 'softmax': expected one of"),
    ({"train_fraction": 0.0}, "train_fraction 0.0: expected in \\(0, 1\\]"),
    ({"n_blendmaps": 0}, "n_blendmaps 0: expected at least 1"),
    ({"needle_ratio": 0.5}, "needle_ratio 0.5: expected 1 or more"),
])
def test_config_that_cannot_work_is_a_one_line_error(tmp_path, override, message):
    import dataclasses

    from dejavu.errors import DejavuError
    from dejavu.personalize.pipeline import personalize
    from dejavu.personalize.config import PRESETS, PersonalizeConfig

    for name in PRESETS:
        PRESETS[name]().validate()
    cfg = dataclasses.replace(PersonalizeConfig(), **override)
    # refused before anything is read or written
    with pytest.raises(DejavuError, match=f"^config: {message}"):
        personalize(tmp_path / "missing.mp4", tmp_path / "out", cfg=cfg)
    assert not (tmp_path / "out").exists()


def test_position_regulariser_weight_follows_the_number_of_views(tiny, tiny_frames, tmp_path):
    import dataclasses

    from dejavu.personalize.config import PersonalizeConfig, preset

    cfg = PersonalizeConfig()
    assert cfg.position_weight(1) == 0.5 and cfg.position_weight(40) == 0.0  # a photo keeps the paper's 0.5
    assert dataclasses.replace(cfg, w_position=0.2).position_weight(40) == 0.2
    assert preset("gpu").position_weight(40) == 0.5
    head, uvmap, true = tiny
    for frames, weight in ((tiny_frames, 0.0), (tiny_frames.subset([0]), 0.5)):
        c = tiny_config(steps=1)
        blend = fit_pca_basis(frames.params.expression, k=c.n_blendmaps)
        trainer = Trainer(head, uvmap, frames, _start(true), blend, c, tmp_path / str(weight), torch.device("cpu"),
                          progress=False)
        assert trainer.w_position == weight
        # the term is in the loss only where its weight is positive
        assert ("position" in trainer.run().history[0]) == (weight > 0)


def test_ray_regulariser_uses_the_photo_cameras_rays(tiny, tiny_frames, tmp_path):
    """For one view the rays point from its camera centre through each texel's surface point; the term is
    in the loss only when its weight is positive."""
    head, uvmap, true = tiny
    frames = tiny_frames.subset([0])
    blend = fit_pca_basis(frames.params.expression, k=2)
    assert Trainer(head, uvmap, tiny_frames, _start(true), blend, tiny_config(steps=1), tmp_path / "video",
                   torch.device("cpu"), progress=False).rays is None  # off for a video by default
    assert Trainer(head, uvmap, frames, _start(true), blend, tiny_config(steps=1, w_ray=0.0), tmp_path / "off",
                   torch.device("cpu"), progress=False).rays is None
    trainer = Trainer(head, uvmap, frames, _start(true), blend, tiny_config(steps=1, w_ray=2.0), tmp_path / "on",
                      torch.device("cpu"), progress=False)
    w2c = frames.world_to_cam[0]
    centre = -(w2c[:3, :3].T @ w2c[:3, 3])
    points = trainer.bases[0, ch.XYZ]  # (3, S, S)
    expected = torch.nn.functional.normalize(points - centre[:, None, None], dim=0) * uvmap.mask
    torch.testing.assert_close(trainer.rays[0], expected, rtol=1e-5, atol=1e-5)
    assert "ray" in trainer.run().history[0]


def test_ray_needle_term_is_in_the_loss_only_when_weighted(tiny, tiny_frames, tmp_path):
    """The depth-needle penalty sees each step's rendered Gaussians and cameras; at weight 0 it is off."""
    head, uvmap, true = tiny
    blend = fit_pca_basis(tiny_frames.params.expression, k=2)
    off = Trainer(head, uvmap, tiny_frames, _start(true), blend, tiny_config(steps=1, w_ray_needle=0.0), tmp_path / "off",
                  torch.device("cpu"), progress=False).run()
    assert "ray_needle" not in off.history[0]
    on = Trainer(head, uvmap, tiny_frames, _start(true), blend, tiny_config(steps=1, w_ray_needle=1.0, ray_needle_ratio=1.0),
                 tmp_path / "on", torch.device("cpu"), progress=False).run()
    assert on.history[0]["ray_needle"] > 0  # at ratio 1 any Gaussian longer along its ray than across pays


def test_side_silhouette_counts_only_what_grows_out_of_the_start(tiny, tiny_frames, tmp_path):
    """Seen from the side, the avatar at its start costs nothing; Gaussians grown past the start's silhouette
    do, with a gradient that shrinks them; the term is in the loss only when weighted."""
    head, uvmap, true = tiny
    S = uvmap.size
    blend = fit_pca_basis(tiny_frames.params.expression, k=2)
    cfg = tiny_config(w_side_silhouette=1.0, side_views=2)
    trainer = Trainer(head, uvmap, tiny_frames, true, blend, cfg, tmp_path / "a", torch.device("cpu"), progress=False)
    idx = torch.arange(3)
    batch = tiny_frames.batch(idx, "cpu")
    zero = torch.zeros(1, ch.N_CHANNELS, S, S)
    _, _, g = trainer.render_batch(batch, zero, idx, with_gaussians=True)
    assert float(trainer.side_silhouette(batch, g, step=3, idx=idx)) == 0.0
    grown = zero.clone()
    grown[:, ch.LOG_SCALE] = 1.5  # every Gaussian 4.5x larger: a halo round the head
    grown.requires_grad_(True)
    _, _, g = trainer.render_batch(batch, grown, idx, with_gaussians=True)
    term = trainer.side_silhouette(batch, g, step=3, idx=idx)
    assert float(term) > 1e-3
    term.backward()
    assert float(grown.grad[0, ch.LOG_SCALE].sum()) > 0  # descending it shrinks the Gaussians
    assert float(trainer.side_silhouette(batch, g, step=4, idx=idx)) != float(term)  # another step, other yaws
    on = Trainer(head, uvmap, tiny_frames, _start(true), blend, tiny_config(steps=1, w_side_silhouette=1.0),
                 tmp_path / "on", torch.device("cpu"), progress=False).run()
    assert "side_silhouette" in on.history[0]
    off = Trainer(head, uvmap, tiny_frames, _start(true), blend, tiny_config(steps=1), tmp_path / "off",
                  torch.device("cpu"), progress=False).run()
    assert "side_silhouette" not in off.history[0]


def test_pixels_outside_the_source_frame_carry_no_loss(tiny, tiny_frames, tmp_path):
    """Where a crop left its source frame (``seen`` 0), no loss term sees the render: no gradient there,
    and the loss is that of a render equal to the target there."""
    from dataclasses import replace

    head, uvmap, true = tiny
    T, R = len(tiny_frames), tiny_frames.resolution
    seen = torch.full((T, R, R, 1), 255, dtype=torch.uint8)
    seen[:, : R // 3] = 0  # the top third lay above the frame
    frames = replace(tiny_frames, seen=seen, masks=torch.full((T, R, R, 1), 255, dtype=torch.uint8))
    cfg = tiny_config(w_lpips=0.1, lpips_every=1, w_ssim=0.2, w_alpha=0.5)
    blend = fit_pca_basis(frames.params.expression, k=cfg.n_blendmaps)
    trainer = Trainer(head, uvmap, frames, true, blend, cfg, tmp_path, torch.device("cpu"), progress=False)
    batch = frames.batch(torch.arange(4), "cpu")
    pred = torch.rand(4, 3, R, R, requires_grad=True)
    alpha = torch.rand(4, 1, R, R, requires_grad=True)
    delta = torch.zeros(1, ch.N_CHANNELS, uvmap.size, uvmap.size)
    loss, terms = trainer.loss(2, 0, 0, pred, batch, delta, alpha)
    assert {"huber", "lpips", "ssim", "alpha"} <= set(terms)
    loss.backward()
    assert pred.grad[:, :, : R // 3].abs().max() == 0 and alpha.grad[:, :, : R // 3].abs().max() == 0
    assert pred.grad[:, :, R // 3:].abs().max() > 0 and alpha.grad[:, :, R // 3:].abs().max() > 0
    same = pred.detach().clone()
    same[:, :, : R // 3] = batch["images"][:, :, : R // 3]
    loss2, _ = trainer.loss(2, 0, 0, same, batch, delta, alpha.detach())
    torch.testing.assert_close(loss2, loss.detach())


def test_unseen_colour_term_holds_only_badly_seen_texels(tiny, tiny_frames, tmp_path):
    """The colour regulariser pulls a texel's colour delta to 0 in proportion to how badly the training
    views see it: no gradient on fully seen texels, none on other channels, and off without ``seen``."""
    head, uvmap, true = tiny
    S = uvmap.size
    seen = torch.zeros(S, S)
    seen[: S // 2] = 1.0  # top half of the UV layout fully seen, bottom half never
    cfg = tiny_config(w_unseen_color=0.5)
    blend = fit_pca_basis(tiny_frames.params.expression, k=cfg.n_blendmaps)
    batch = tiny_frames.batch(torch.arange(2), "cpu")
    pred = batch["images"].clone()
    delta = torch.randn(1, ch.N_CHANNELS, S, S, requires_grad=True)
    trainer = Trainer(head, uvmap, tiny_frames, true, blend, cfg, tmp_path / "a", torch.device("cpu"),
                      progress=False, seen=seen)
    loss, terms = trainer.loss(1, 0, 0, pred, batch, delta)
    norms = torch.linalg.vector_norm(delta.detach()[0, ch.COLOR], dim=0)
    expected = 0.5 * (norms * uvmap.mask * (1 - seen)).sum() / S ** 2
    assert abs(terms["unseen_color"] - float(expected)) < 1e-5
    loss.backward()
    grad = delta.grad[0]
    unseen = uvmap.mask & (seen == 0)
    assert grad[ch.COLOR][:, : S // 2].abs().max() == 0  # seen texels: free
    assert (grad[ch.COLOR][:, unseen] * delta.detach()[0, ch.COLOR][:, unseen] > 0).all()  # pulled to 0
    no_seen = Trainer(head, uvmap, tiny_frames, true, blend, cfg, tmp_path / "b", torch.device("cpu"), progress=False)
    assert "unseen_color" not in no_seen.loss(1, 0, 0, pred, batch, delta)[1]


def test_unseen_scale_term_holds_only_badly_seen_texels(tiny, tiny_frames, tmp_path):
    """The scale regulariser on badly seen texels (on for single photos): a texel's log-scale delta is pulled
    to 0 in proportion to how badly the views see it; fully seen texels and other channels are free."""
    head, uvmap, true = tiny
    S = uvmap.size
    seen = torch.zeros(S, S)
    seen[: S // 2] = 1.0
    cfg = tiny_config(w_unseen_color=0.0, w_unseen_scale=0.5, w_scale=0.0, w_needle=0.0)
    blend = fit_pca_basis(tiny_frames.params.expression, k=cfg.n_blendmaps)
    batch = tiny_frames.batch(torch.arange(2), "cpu")
    delta = torch.randn(1, ch.N_CHANNELS, S, S, requires_grad=True)
    trainer = Trainer(head, uvmap, tiny_frames, true, blend, cfg, tmp_path / "a", torch.device("cpu"),
                      progress=False, seen=seen)
    loss, terms = trainer.loss(1, 0, 0, batch["images"].clone(), batch, delta)
    norms = torch.linalg.vector_norm(delta.detach()[0, ch.LOG_SCALE], dim=0)
    assert abs(terms["unseen_scale"] - float(0.5 * (norms * uvmap.mask * (1 - seen)).sum() / S ** 2)) < 1e-5
    loss.backward()
    grad = delta.grad[0]
    unseen = uvmap.mask & (seen == 0)
    assert grad[ch.LOG_SCALE][:, : S // 2].abs().max() == 0
    assert (grad[ch.LOG_SCALE][:, unseen] * delta.detach()[0, ch.LOG_SCALE][:, unseen] > 0).all()
    assert grad[ch.XYZ].abs().max() == 0 and grad[ch.COLOR].abs().max() == 0
    # the default: on for one photo, off for videos
    from dejavu.personalize.config import PersonalizeConfig

    assert PersonalizeConfig().unseen_scale_weight(1) > 0 and PersonalizeConfig().unseen_scale_weight(100) == 0
    assert PersonalizeConfig(w_unseen_scale=0.3).unseen_scale_weight(100) == 0.3


def test_needle_term_shortens_needles_of_the_final_scales(tiny, tiny_frames, tmp_path):
    """The needle penalty sees the mean offsets plus the delta (the final axis ratios), touches only the
    log-scales of texels whose longest axis exceeds ``needle_ratio`` x the middle one, and pulls that
    axis in; it is off at weight 0."""
    import math

    head, uvmap, true = tiny
    S = uvmap.size
    mean = true.clone()
    mean[ch.LOG_SCALE] = 0.0
    mean[ch.LOG_SCALE.start, : S // 2] = math.log(20.0)  # top half of the layout: needles 20:1:1
    cfg = tiny_config(w_needle=0.5, needle_ratio=4.0)
    blend = fit_pca_basis(tiny_frames.params.expression, k=cfg.n_blendmaps)
    batch = tiny_frames.batch(torch.arange(2), "cpu")
    pred = batch["images"].clone()
    delta = torch.zeros(1, ch.N_CHANNELS, S, S, requires_grad=True)
    trainer = Trainer(head, uvmap, tiny_frames, mean, blend, cfg, tmp_path / "a", torch.device("cpu"), progress=False)
    loss, terms = trainer.loss(1, 0, 0, pred, batch, delta)
    needles = uvmap.mask.clone()
    needles[S // 2:] = False
    expected = 0.5 * math.log(20.0 / 4.0) * float(needles.sum()) / S ** 2
    assert abs(terms["needle"] - expected) < 1e-5
    loss.backward()
    grad = delta.grad[0]
    assert (grad[ch.LOG_SCALE.start][needles] > 0).all()  # gradient descent shortens the long axis
    assert grad[ch.LOG_SCALE][:, S // 2:].abs().max() == 0  # round Gaussians: free
    off = Trainer(head, uvmap, tiny_frames, mean, blend, tiny_config(w_needle=0.0), tmp_path / "b",
                  torch.device("cpu"), progress=False)
    assert "needle" not in off.loss(1, 0, 0, pred, batch, delta)[1]


def test_coarse_to_fine_trains_at_half_resolution_first(tiny, tiny_frames, tmp_path):
    """coarse_fraction 0.5 of 8 steps: 4 steps render at R/2, then 4 at R; the avatar still learns."""
    head, uvmap, true = tiny
    init = _start(true)
    cfg = tiny_config(steps=8, coarse_fraction=0.5, preview_every=2, checkpoint_every=0, w_lpips=0.0)  # 16^2: too small for LPIPS
    blend = fit_pca_basis(tiny_frames.params.expression, k=cfg.n_blendmaps)
    trainer = Trainer(head, uvmap, tiny_frames, init, blend, cfg, tmp_path, torch.device("cpu"), progress=False)
    seen = []
    render = trainer.render_batch
    trainer.render_batch = lambda batch, *a, **k: (seen.append(batch["images"].shape[-1]), render(batch, *a, **k))[1]
    state = trainer.run()
    R = tiny_frames.resolution
    assert seen == [R // 2] * 4 + [R] * 4
    assert len(trainer.step_seconds(coarse=True)) == len(trainer.step_seconds()) == 4
    before = _psnr(head, uvmap, tiny_frames, init, lambda e: torch.zeros(1, 13, 16, 16))
    after = _psnr(head, uvmap, tiny_frames, init,
                  lambda e: torch.einsum("bk,kchw->bchw", blend.weights(e), state.blendmaps))
    assert after > before + 1.0, (before, after)


def test_coarse_phase_with_a_budget_is_its_share_of_the_time(tiny, tiny_frames, tmp_path, monkeypatch):
    """With a deadline the coarse phase lasts while more than 1 - coarse_fraction of the budget is left, and
    the planned steps count the coarse and the full-resolution time at their own rates."""
    import dejavu.personalize.train as train_mod

    head, uvmap, true = tiny
    clock = [1000.0]
    monkeypatch.setattr(train_mod.time, "time", lambda: clock[0])
    cfg = tiny_config(steps=8, coarse_fraction=0.6)
    trainer = Trainer(head, uvmap, tiny_frames, true, fit_pca_basis(tiny_frames.params.expression, k=3), cfg,
                      tmp_path, torch.device("cpu"), deadline=1100.0, progress=False)
    state = train_mod.TrainState()
    trainer._budget = 100.0
    assert trainer._coarse(state, now=1059.0) and not trainer._coarse(state, now=1061.0)
    trainer._step_times = {True: [9.0, 1.0, 1.0], False: []}
    # 95 s left after the reserve: 55 s of coarse steps at 1 s, then the last 40 s at the guessed 4 s a
    # full-resolution step (4 coarse ones), or at the measured 5 s once there is one
    assert trainer._planned_total(state) == 55 + 10
    trainer._step_times[False] = [9.0, 5.0, 5.0]
    assert trainer._planned_total(state) == 55 + 8
