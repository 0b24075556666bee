"""Region masking: per-scheme rates within statistical bounds, what is never masked, replacement
from other images, pixel masking, reproducibility and errors."""

from __future__ import annotations

import math

import pytest
import torch

from vlp_course.pretraining.regions import (
    IGNORE_INDEX,
    KEEP,
    KEEP_UNSELECTED,
    REPLACE,
    SCHEMES,
    ZERO,
    RegionScheme,
    apply_region_actions,
    eligible_regions,
    mask_pixels,
    mask_regions,
    region_actions_from_uniforms,
)

B, N, D = 2400, 61, 4  # 146,400 positions, of which ~106k are eligible regions


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.rand(B, N, D, generator=g) + 1.0  # strictly positive: zeroed rows are recognisable
    feats[:, :, 0] = torch.arange(B)[:, None].float()  # image id in channel 0
    feats[:, :, 1] = torch.arange(N)[None, :].float()  # region id in channel 1
    n_real = torch.randint(30, N + 1, (B,), generator=g)
    region_mask = (torch.arange(N)[None, :] < n_real[:, None]).long()
    return feats, region_mask


def _bound(p, n, sigmas=5.0):
    return sigmas * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("scheme", ["vilbert", "lxmert", "vlbert"])
def test_rates_within_statistical_bounds(scheme):
    feats, region_mask = _batch()
    out = mask_regions(feats, scheme=scheme, prob=0.15, region_mask=region_mask, num_global=1,
                       generator=torch.Generator().manual_seed(1))
    eligible = region_mask.bool().clone()
    eligible[:, 0] = False
    n = int(eligible.sum())
    assert n >= 100_000
    sel = out.selected
    rate = sel[eligible].float().mean().item()
    assert abs(rate - 0.15) < _bound(0.15, n), rate
    s = SCHEMES[scheme]
    n_sel = int(sel.sum())
    for code, share in ((ZERO, s.zero), (REPLACE, s.replace), (KEEP, s.keep)):
        got = (out.actions == code).sum().item() / n_sel
        assert abs(got - share) < _bound(share, n_sel) + 1e-12, (code, got, share)
    # the features really are zeroed / replaced / kept
    z, r, k = out.actions == ZERO, out.actions == REPLACE, out.actions == KEEP
    assert out.features[z].abs().max() == 0
    assert torch.equal(out.features[k], feats[k])
    assert torch.equal(out.features[~sel], feats[~sel])
    if s.replace:
        rep = out.features[r]
        assert rep.shape[0] > 0
        # from another image, and a real non-global region there
        assert (rep[:, 0] != feats[r][:, 0]).all()
        src_img, src_reg = rep[:, 0].long(), rep[:, 1].long()
        assert region_mask[src_img, src_reg].bool().all() and (src_reg > 0).all()
        assert torch.equal(rep, feats[src_img, src_reg])
    # labels: 1 at selected, ignore elsewhere
    assert torch.equal(out.labels, torch.where(sel, 1, IGNORE_INDEX))
    assert torch.equal(out.original, feats)


def test_padding_global_and_protected_never_masked():
    feats, region_mask = _batch(3)
    never = torch.zeros(B, N, dtype=torch.bool)
    never[:, 5] = True
    out = mask_regions(feats, scheme="lxmert", prob=1.0, region_mask=region_mask, num_global=2,
                       never_mask=never, generator=torch.Generator().manual_seed(0))
    assert not out.selected[:, :2].any() and not out.selected[:, 5].any()
    assert not out.selected[region_mask == 0].any()
    ok = region_mask.bool().clone()
    ok[:, :2] = False
    ok[:, 5] = False
    assert out.selected[ok].all()  # prob 1: everything eligible is selected
    assert torch.equal(out.features[:, :2], feats[:, :2])
    assert torch.equal(out.features[region_mask == 0], feats[region_mask == 0])


def test_targets_become_labels_and_prob_zero_masks_nothing():
    feats, region_mask = _batch(4)
    targets = torch.randint(0, 1600, (B, N))
    out = mask_regions(feats, prob=0.5, region_mask=region_mask, targets=targets, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.labels[out.selected], targets[out.selected])
    assert (out.labels[~out.selected] == IGNORE_INDEX).all()
    none = mask_regions(feats, prob=0.0, generator=torch.Generator().manual_seed(0))
    assert not none.selected.any() and torch.equal(none.features, feats)


def test_seeded_reproducible():
    feats, region_mask = _batch(5)
    a = mask_regions(feats[:50], scheme="lxmert", generator=torch.Generator().manual_seed(7))
    b = mask_regions(feats[:50], scheme="lxmert", generator=torch.Generator().manual_seed(7))
    c = mask_regions(feats[:50], scheme="lxmert", generator=torch.Generator().manual_seed(8))
    assert torch.equal(a.features, b.features) and torch.equal(a.actions, b.actions)
    assert not torch.equal(a.actions, c.actions)


def test_decisions_from_uniforms_by_hand():
    eligible = torch.tensor([[True, True, True, True, False]])
    u_sel = torch.tensor([[0.10, 0.14, 0.05, 0.20, 0.0]])
    u_act = torch.tensor([[0.79, 0.85, 0.95, 0.10, 0.10]])
    acts = region_actions_from_uniforms(eligible, u_sel, u_act, 0.15, "lxmert")
    assert acts.tolist() == [[ZERO, REPLACE, KEEP, KEEP_UNSELECTED, KEEP_UNSELECTED]]
    acts = region_actions_from_uniforms(eligible, u_sel, u_act, 0.15, "vilbert")
    assert acts.tolist() == [[ZERO, ZERO, KEEP, KEEP_UNSELECTED, KEEP_UNSELECTED]]


def test_mask_value_for_vlbert_feature_mode_gets_gradients():
    feats = torch.ones(1, 3, 2)
    acts = torch.tensor([[ZERO, KEEP, KEEP_UNSELECTED]])
    mv = torch.tensor([0.5, -0.5], requires_grad=True)
    out = apply_region_actions(feats, acts, mask_value=mv)
    assert out.tolist() == [[[0.5, -0.5], [1, 1], [1, 1]]]
    out.sum().backward()
    assert mv.grad.tolist() == [1.0, 1.0]


def test_single_image_replacement_comes_from_another_region():
    feats = torch.arange(8.0).view(1, 8, 1) + 1
    out = mask_regions(feats, scheme=RegionScheme(0.0, 1.0, 0.0), prob=1.0, generator=torch.Generator().manual_seed(0))
    assert (out.actions == REPLACE).all()
    assert (out.features != feats).all()


def test_mask_pixels_zeroes_exactly_the_selected_boxes():
    img = torch.ones(2, 3, 6, 8)
    boxes = torch.tensor([[[1.0, 1.0, 3.0, 2.0], [4.2, 0.0, 5.5, 6.0]], [[0.0, 0.0, 8.0, 6.0], [0, 0, 1, 1]]])
    sel = torch.tensor([[True, True], [False, False]])
    out = mask_pixels(img, boxes, sel)
    expect = torch.ones(6, 8)
    expect[1:2, 1:3] = 0  # rows 1, cols 1-2
    expect[0:6, 4:6] = 0  # x 4.2..5.5 touches columns 4 and 5
    assert torch.equal(out[0, 0], expect) and torch.equal(out[0, 2], expect)
    assert torch.equal(out[1], img[1])
    assert torch.equal(img, torch.ones(2, 3, 6, 8))  # input untouched


def test_errors():
    feats = torch.zeros(2, 4, 3)
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"probability must lie in \[0, 1\]"):
            mask_regions(feats, prob=p)
    with pytest.raises(ValueError, match="scheme must be one of"):
        mask_regions(feats, scheme="uniter")
    with pytest.raises(ValueError, match=r"region_mask must have shape \(B, N\) = \(2, 4\)"):
        mask_regions(feats, region_mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match=r"features must have shape \(B, N, D\)"):
        mask_regions(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"targets must have shape"):
        mask_regions(feats, targets=torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="sum must be 1|must be 1"):
        RegionScheme(0.8, 0.1, 0.2)
    with pytest.raises(ValueError, match="num_global"):
        eligible_regions((2, 4), num_global=5)
    with pytest.raises(ValueError, match="x2 >= x1"):
        mask_pixels(torch.ones(1, 1, 4, 4), torch.tensor([[[3.0, 0, 1, 2]]]), torch.ones(1, 1, dtype=torch.bool))
