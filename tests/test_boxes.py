"""Box utilities: formats, normalization, validation (lxmert issue 26, mmf issue 520; see
docs/pitfalls.md, "Boxes in the wrong format" and "Pixel boxes left unnormalized")."""

import pytest
import torch

from vlp_course import boxes as B


def test_convert_between_every_format_by_hand():
    xyxy = torch.tensor([[10.0, 20.0, 50.0, 80.0]])
    assert B.convert(xyxy, "xyxy", "xywh").tolist() == [[10, 20, 40, 60]]
    assert B.convert(xyxy, "xyxy", "yxyx").tolist() == [[20, 10, 80, 50]]
    assert B.convert(xyxy, "xyxy", "cxcywh").tolist() == [[30, 50, 40, 60]]
    for fmt in B.FORMATS:
        assert torch.equal(B.convert(B.convert(xyxy, "xyxy", fmt), fmt, "xyxy"), xyxy)


def test_wrong_format_is_caught_with_a_message_naming_the_format():
    """lxmert issue 26 and mmf issue 520: boxes given as (x, y, w, h) or (y1, x1, y2, x2) where
    (x1, y1, x2, y2) was expected. The check refuses them and names the expected format."""
    xywh = torch.tensor([[30.0, 40.0, 10.0, 10.0]])  # read as xyxy: x2 = 10 < x1 = 30
    with pytest.raises(ValueError, match=r"\(x1, y1, x2, y2\)"):
        B.validate_xyxy(xywh, normalized=False)
    yxyx = torch.tensor([[0.1, 0.6, 0.3, 0.9]])  # y1, x1, y2, x2 -> read as xyxy: x2 = 0.3 < x1 = 0.1? no: y2 < y1
    with pytest.raises(ValueError, match="x2 >= x1"):
        B.validate_xyxy(torch.tensor([[0.6, 0.1, 0.3, 0.9]]), normalized=True)
    assert torch.allclose(B.convert(yxyx, "yxyx"), torch.tensor([[0.6, 0.1, 0.9, 0.3]]))
    with pytest.raises(ValueError, match="format must be one of"):
        B.convert(xywh, "xyhw")


def test_normalize_divides_by_image_size_and_is_not_zero():
    """lxmert issue 26 and mmf issue 520: LXMERT's boxes are pixel xyxy divided by (W, H, W, H)
    (airsplay/lxmert src/pretrain/lxmert_data.py); a wrong division leaves them all zero or > 1."""
    px = torch.tensor([[16.0, 8.0, 48.0, 40.0], [0.0, 0.0, 64.0, 48.0]])
    nb = B.normalize(px, width=64, height=48)
    assert torch.allclose(nb, px / torch.tensor([64.0, 48.0, 64.0, 48.0]))
    assert nb.abs().sum() > 0
    assert torch.allclose(B.denormalize(nb, 64, 48), px)


def test_normalized_range_and_image_bounds_are_enforced():
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        B.validate_xyxy(torch.tensor([[0.0, 0.0, 12.0, 12.0]]), normalized=True)
    with pytest.raises(ValueError, match="inside the image"):
        B.normalize(torch.tensor([[0.0, 0.0, 70.0, 10.0]]), 64, 64)
    with pytest.raises(ValueError, match="positive"):
        B.normalize(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), 0, 64)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        B.validate_xyxy(torch.zeros(3, 5), normalized=True)
    with pytest.raises(ValueError, match="finite"):
        B.validate_xyxy(torch.tensor([[0.0, 0.0, float("nan"), 1.0]]), normalized=True)


def test_vilbert_location_is_the_5d_vector_of_the_original_reader():
    loc = B.vilbert_location(torch.tensor([[10.0, 20.0, 30.0, 60.0]]), width=100, height=80)
    expected = [0.1, 0.25, 0.3, 0.75, (20 * 40) / (100 * 80)]
    assert torch.allclose(loc, torch.tensor([expected]))
