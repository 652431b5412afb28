"""Photo colours: a render of a known avatar gives back its colours where the camera sees them."""

from __future__ import annotations

import torch

from dejavu.gaussians import channels as ch


def _scene(procedural_head, size=64, uv=32, yaw=0.0):
    from dejavu.gaussians.uvmap import UVGaussianMap
    from dejavu.render.camera import intrinsics, orbit_pose6, pose6_to_world_to_cam

    torch.manual_seed(0)
    uvmap = UVGaussianMap(procedural_head, uv)
    verts = procedural_head(batch_size=1)
    # Gaussians sized to the texel spacing and opaque, so a render covers the surface.
    off = torch.zeros(ch.N_CHANNELS, uv, uv)
    off[ch.LOG_SCALE] = float(torch.log(torch.tensor(0.006))) - ch.INIT_LOG_SCALE
    off[ch.OPACITY] = 4.0
    truth = off.clone()
    yy, xx = torch.meshgrid(torch.linspace(0, 1, uv), torch.linspace(0, 1, uv), indexing="ij")
    rgb = torch.stack([0.2 + 0.6 * xx, 0.3 + 0.5 * yy, 0.5 + 0.3 * torch.sin(6 * xx)])  # smooth, in (0, 1)
    truth[ch.COLOR] = (rgb - 0.5) / ch.SH_C0 - ch.INIT_COLOR_DC
    truth = truth * uvmap.mask
    off = off * uvmap.mask
    centre = tuple(float(c) for c in verts[0].mean(0))
    w2c = pose6_to_world_to_cam(orbit_pose6([yaw], distance=0.9, center=centre))
    K = intrinsics(size, size, batch=1)
    return uvmap, verts, off, truth, w2c, K


def test_photo_texture_recovers_seen_colours(procedural_head):
    from dejavu.recon.photo_texture import photo_texture

    size = 64
    uvmap, verts, off, truth, w2c, K = _scene(procedural_head, size)
    r = uvmap.gaussians(verts, truth[None]).render(w2c, K, size, size, backend="reference")
    image, mask = r.rgb, (r.alpha[..., 0] > 0.5).float()
    tex = photo_texture(uvmap, verts, off, image, mask, w2c, K, iterations=3,
                        fill=False, backend="reference")

    seen = tex.weight > 0.99
    hidden = uvmap.mask & (tex.weight == 0)
    assert seen.sum() > 50 and hidden.sum() > 50  # the back of the head is not seen from the front
    # Hidden texels keep their colour offsets exactly; seen ones come close to the truth.
    assert torch.equal(tex.offsets[ch.COLOR][:, hidden], off[ch.COLOR][:, hidden])
    rgb = lambda o: 0.5 + ch.SH_C0 * (o[ch.COLOR] + ch.INIT_COLOR_DC)  # noqa: E731
    err = (rgb(tex.offsets) - rgb(truth))[:, seen].abs()
    # (read off the photo they are within 0.006; the back-projection then lets them make up for the
    # partly seen Gaussians at grazing angles, which keep their wrong colours with fill=False)
    assert float(err.median()) < 0.04
    # Back-projection lowers the residual every step, and the final render matches the photo.
    assert all(b < a for a, b in zip(tex.residual_rmse, tex.residual_rmse[1:]))
    again = uvmap.gaussians(verts, tex.offsets[None]).render(w2c, K, size, size, backend="reference").rgb
    before = uvmap.gaussians(verts, off[None]).render(w2c, K, size, size, backend="reference").rgb
    inside = mask.bool()
    assert float((again - image)[inside].abs().mean()) < 0.25 * float((before - image)[inside].abs().mean())
    # Everything but colour is untouched.
    keep = [c for c in range(ch.N_CHANNELS) if c not in range(ch.COLOR.start, ch.COLOR.stop)]
    assert torch.equal(tex.offsets[keep], off[keep])

    # With filling, hidden texels take colours spread from the seen ones (within the seen range).
    filled = photo_texture(uvmap, verts, off, image, mask, w2c, K, iterations=0,
                           backend="reference")
    skin = hidden & ~uvmap.mouth_mask
    got, seen_rgb = rgb(filled.offsets)[:, skin], rgb(filled.offsets)[:, seen]
    assert skin.sum() > 50 and not torch.equal(filled.offsets[ch.COLOR][:, skin], off[ch.COLOR][:, skin])
    mouth = hidden & uvmap.mouth_mask  # a hidden mouth interior keeps the network's colours
    assert torch.equal(filled.offsets[ch.COLOR][:, mouth], off[ch.COLOR][:, mouth])
    assert (got.amin(1) >= seen_rgb.amin(1) - 1e-4).all() and (got.amax(1) <= seen_rgb.amax(1) + 1e-4).all()


def test_push_pull_fill():
    from dejavu.recon.photo_texture import push_pull_fill

    values = torch.zeros(1, 8, 8)
    weight = torch.zeros(8, 8)
    values[0, :, :4], weight[:, :4] = 2.0, 1.0  # left half known (2), right half unknown
    values[0, 0, 7], weight[0, 7] = 5.0, 1.0  # one known texel on the right
    out = push_pull_fill(values, weight)
    assert torch.equal(out[0][weight > 0], values[0][weight > 0])  # known texels are kept
    assert torch.isfinite(out).all() and (out >= 2.0 - 1e-6).all() and (out <= 5.0 + 1e-6).all()
    assert float(out[0, 1, 7]) > float(out[0, 7, 7])  # nearer the 5 -> closer to 5


def test_photo_texture_views_average(procedural_head):
    """Two views: texels seen by both get colours from both; the result still fits each view."""
    from dejavu.recon.photo_texture import photo_texture

    size = 64
    uvmap, verts, off, truth, w2c0, K = _scene(procedural_head, size, yaw=-25.0)
    _, _, _, _, w2c1, _ = _scene(procedural_head, size, yaw=25.0)
    w2c, K2, V = torch.cat([w2c0, w2c1]), K.expand(2, 3, 3), verts.expand(2, -1, -1)
    r = uvmap.gaussians(V, truth[None]).render(w2c, K2, size, size, backend="reference")
    tex = photo_texture(uvmap, V, off, r.rgb, (r.alpha[..., 0] > 0.5).float(), w2c, K2,
                        iterations=2, backend="reference")
    one = photo_texture(uvmap, V[:1], off, r.rgb[:1], (r.alpha[:1, ..., 0] > 0.5).float(),
                        w2c[:1], K2[:1], iterations=2, backend="reference")
    assert float(tex.weight.sum()) > 1.2 * float(one.weight.sum())  # the second view sees more of the head


def test_back_projection_converges_on_fine_texture(procedural_head):
    """Texel-scale colour noise (pores, stubble) under overlapping footprints: the footprint-weighted
    (SART) step brings the render closer to the photo at every iteration; adding the residual at each
    Gaussian's centre pixel (a Jacobi step) stalls at 0.97x and then diverges here."""
    from dejavu.recon.photo_texture import photo_texture

    size, uv = 96, 48
    uvmap, verts, off, truth, w2c, K = _scene(procedural_head, size, uv=uv)
    noise = torch.rand(3, uv, uv, generator=torch.Generator().manual_seed(1))
    truth[ch.COLOR] = ((0.25 + 0.5 * noise - 0.5) / ch.SH_C0 - ch.INIT_COLOR_DC) * uvmap.mask
    r = uvmap.gaussians(verts, truth[None]).render(w2c, K, size, size, backend="reference")
    image, mask = r.rgb, (r.alpha[..., 0] > 0.5).float()

    errors = []
    for iterations in (0, 1, 3, 6):
        tex = photo_texture(uvmap, verts, off, image, mask, w2c, K, iterations=iterations, fill=False,
                            backend="reference")
        again = uvmap.gaussians(verts, tex.offsets[None]).render(w2c, K, size, size, backend="reference").rgb
        errors.append(float((again - image)[mask.bool()].abs().mean()))
    assert all(b < a for a, b in zip(errors, errors[1:]))
    assert all(b < a for a, b in zip(tex.residual_rmse, tex.residual_rmse[1:]))
    assert errors[-1] < 0.88 * errors[0]


def test_erode_masks():
    from dejavu.recon.photo_texture import erode_masks

    m = torch.zeros(1, 20, 20)
    m[0, 5:15, 5:15] = 1.0
    e = erode_masks(m, 2)
    assert int(e.sum()) == 36 and bool((e[0, 7:13, 7:13] == 1).all())
    assert torch.equal(erode_masks(m, 0), m)


def test_outline_pixels_do_not_colour_the_unseen_texels(procedural_head):
    """Where the head mask cuts across the head (the tracker's cut under the jaw, the hair's end), the
    downsampled crop mixes the head with the white outside. The texels read there may keep that reading
    (the photo's own view shows it), but must not spread it: the fill of the unseen texels (a grey back
    of the head) comes from inside the mask only."""
    import torch.nn.functional as F

    from dejavu.recon import photo_texture as pt

    size = 64
    uvmap, verts, off, truth, w2c, K = _scene(procedural_head, size)
    # a crop at twice the size, white below a cut through the face, then downsampled as the frames are
    _, _, _, _, _, K2 = _scene(procedural_head, 2 * size)
    big = uvmap.gaussians(verts, truth[None]).render(w2c, K2, 2 * size, 2 * size, background=(1.0, 1.0, 1.0),
                                                     backend="reference")
    # cut through a pixel row of the downsampled crop that front-facing texels' centres fall in
    weight, pix = pt.visibility_weights(uvmap, verts, off, torch.ones(1, size, size), w2c, K, backend="reference")
    row = int(pix[0, weight[0] > 0.5, 1].median())
    keep = (big.alpha[..., 0] > 0.5).float()
    keep[:, 2 * row + 1:] = 0  # half of that row's pixels lie below the cut
    down = lambda x: F.avg_pool2d(x.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)  # noqa: E731
    mixed = down(big.rgb * keep[..., None] + (1 - keep[..., None]))
    mask = (down(keep[..., None])[..., 0] >= 0.5).float()
    clean = down(big.rgb) * mask[..., None] + (1 - mask[..., None])  # the same cut, no mixed pixels
    rgb = lambda o: 0.5 + ch.SH_C0 * (o[ch.COLOR] + ch.INIT_COLOR_DC)  # noqa: E731

    def lightening():
        got = [pt.photo_texture(uvmap, verts, off, im, mask, w2c, K, iterations=0, backend="reference")
               for im in (mixed, clean)]
        filled = uvmap.mask & (got[1].weight == 0) & ~uvmap.mouth_mask
        return float((rgb(got[0].offsets) - rgb(got[1].offsets))[:, filled].mean(0).max())

    assert lightening() < 1e-4
    pt.MASK_ERODE_FRACTION, saved = 0.0, pt.MASK_ERODE_FRACTION
    try:
        assert lightening() > 0.02  # without the erosion the cut's texels spread the white outside in
    finally:
        pt.MASK_ERODE_FRACTION = saved


def test_best_view_weight_is_the_best_view_not_the_sum(procedural_head):
    from dejavu.recon.photo_texture import best_view_weight, visibility_weights

    size = 64
    uvmap, verts, off, truth, w2c, K = _scene(procedural_head, size)
    mask = torch.ones(1, size, size)
    one = best_view_weight(uvmap, verts, truth, mask, w2c, K, backend="reference")
    w, _ = visibility_weights(uvmap, verts, truth, mask, w2c, K, backend="reference")
    assert torch.allclose(uvmap.gather(one[None, None])[0, :, 0], w[0])
    two = best_view_weight(uvmap, verts.expand(2, -1, -1), truth, mask.expand(2, -1, -1), w2c.expand(2, -1, -1),
                           K.expand(2, -1, -1), backend="reference")
    assert torch.allclose(two, one)  # a second identical view sees nothing better
    assert float(one[~uvmap.mask].abs().max()) == 0
    grazing = (one > 0) & (one < 1)
    assert int(grazing.sum()) > 0  # texels seen edge-on stay partly seen
