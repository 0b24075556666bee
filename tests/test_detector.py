"""The stand-in detector's contract, its accuracy, and the bottom-up feature readers."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

from vlp_course.data.bottom_up import (
    BottomUpRecord, read_bottom_up_npz, read_bottom_up_tsv, record_from_regions, write_bottom_up_npz,
    write_bottom_up_tsv,
)
from vlp_course.data.detector import (
    RegionFeatures, SceneDetector, detector_accuracy, extract_regions, extract_regions_batch, load_detector,
    load_or_train_detector, scene_grid_features, scene_patch_features, train_detector,
)
from vlp_course.data.scenes import COLORS, SHAPES, make_scenes


@pytest.fixture(scope="module")
def trained():
    """The shipped checkpoint (vlp_course/shipped/scene_detector.safetensors, SHA-256 checked)."""
    return load_detector(), None


def test_shipped_detector_is_accurate_on_held_out_scenes(trained):
    model, _ = trained
    acc = detector_accuracy(model, make_scenes(300, seed=4242))  # never seen in training (seed 1000)
    # chance is 1/6 (shape) and 1/7 (colour)
    assert acc["class_acc"] > 0.9 and acc["attr_acc"] > 0.9, acc


def test_training_reduces_the_loss():
    # a few steps on four scenes: the loss (shape CE + colour CE, ln 6 + ln 7 = 3.7 at chance) must fall
    torch.manual_seed(0)
    model, hist = train_detector(make_scenes(4, seed=5), steps=12, batch_size=4, lr=5e-3, seed=0)
    loss = hist.train["loss"]
    assert all(np.isfinite(loss)) and np.mean(loss[-3:]) < np.mean(loss[:3]) - 0.3, loss


def test_shipped_checkpoint_checksum(tmp_path, monkeypatch):
    import vlp_course.data.detector as det
    from vlp_course import files

    path = files.shipped_dir() / det.CHECKPOINT_NAME
    assert path.exists() and files.expected_sha256(det.CHECKPOINT_NAME) == files.sha256_file(path)
    assert path.stat().st_size < 5 * 2**20
    # a damaged copy is refused with a clear message
    (tmp_path / det.CHECKPOINT_NAME).write_bytes(path.read_bytes()[:-10] + b"0123456789")
    (tmp_path / "SHA256SUMS").write_text((files.shipped_dir() / "SHA256SUMS").read_text())
    monkeypatch.setattr(files, "shipped_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match="SHA-256"):
        det.load_detector()


def test_region_feature_contract(trained):
    model, _ = trained
    sc = make_scenes(5, seed=7)[2]
    r = extract_regions(model, sc)
    n = len(sc.objects)
    assert r.features.shape == (n, model.dim) and r.features.dtype == torch.float32
    assert r.class_probs.shape == (n, len(SHAPES)) and r.attr_probs.shape == (n, len(COLORS))
    torch.testing.assert_close(r.class_probs.sum(1), torch.ones(n))
    torch.testing.assert_close(r.attr_probs.sum(1), torch.ones(n))
    assert r.image_size == (64, 64) and float(r.boxes.min()) >= 0 and float(r.boxes.max()) <= 1
    torch.testing.assert_close(r.pixel_boxes(), torch.from_numpy(sc.boxes()))
    assert r.image_feature.shape == (model.dim,)
    # the same boxes given normalized give the same features; so does the batched version
    r2 = extract_regions(model, sc.image, r.boxes, box_format="normalized")
    torch.testing.assert_close(r2.features, r.features)
    rb = extract_regions_batch(model, make_scenes(5, seed=7))[2]
    torch.testing.assert_close(rb.features, r.features, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(rb.class_probs, r.class_probs, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(rb.image_feature, r.image_feature, atol=1e-5, rtol=1e-4)


def test_region_features_reject_bad_boxes(trained):
    model, _ = trained
    sc = make_scenes(1, seed=7)[0]
    with pytest.raises(ValueError, match="inside the image"):
        extract_regions(model, sc.image, [[0, 0, 70, 10]])
    with pytest.raises(ValueError, match="x2 >= x1"):
        extract_regions(model, sc.image, [[30, 0, 10, 10]])
    with pytest.raises(ValueError, match="required"):
        extract_regions(model, sc.image)
    bad = RegionFeatures(torch.zeros(2, 4), torch.zeros(2, 4), (64, 64), torch.full((2, 6), 0.5),
                         torch.full((2, 7), 1 / 7), torch.zeros(4))
    with pytest.raises(ValueError, match="probability distribution"):
        bad.validate()


def test_grid_and_patch_token_counts(trained):
    model, _ = trained
    imgs = make_scenes(2, seed=1).images
    assert scene_grid_features(model, imgs).shape == (2, 16 * 16, model.channels)
    assert scene_patch_features(imgs, 16).shape == (2, 16, 3 * 16 * 16)


def test_load_or_train_caches_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("VLP_COURSE_CACHE", str(tmp_path))
    m1 = load_or_train_detector(seed=3, steps=2, n_scenes=20)
    folder = tmp_path / "detector-s3-t2-n20"
    assert (folder / "detector.safetensors").exists() and (folder / "manifest.json").exists()
    m2 = load_or_train_detector(seed=3, steps=2, n_scenes=20)
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)
    # a corrupted weight file fails its checksum and is retrained
    (folder / "detector.safetensors").write_bytes(b"garbage")
    m3 = load_or_train_detector(seed=3, steps=2, n_scenes=20)
    assert isinstance(m3, SceneDetector) and (folder / "detector.safetensors").stat().st_size > 1000


# --- bottom-up features --------------------------------------------------------------------------

def _record(i, n=3, d=2048, seed=0):
    rng = np.random.default_rng(seed + i)
    x1 = rng.uniform(0, 300, n)
    y1 = rng.uniform(0, 200, n)
    boxes = np.stack([x1, y1, x1 + rng.uniform(1, 100, n), y1 + rng.uniform(1, 100, n)], 1).astype(np.float32)
    return BottomUpRecord(f"COCO_val2014_{i:012d}", 640, 480, boxes, rng.normal(size=(n, d)).astype(np.float32))


def test_butd_tsv_round_trip_and_layout(tmp_path):
    recs = [_record(i, n=2 + i) for i in range(3)]
    p = write_bottom_up_tsv(tmp_path / "feats.tsv", recs)
    line = p.read_text().splitlines()[0].split("\t")
    assert len(line) == 6 and line[0] == "COCO_val2014_000000000000" and line[1:4] == ["640", "480", "2"]
    # the boxes field is base64 of raw float32 (checked by hand)
    np.testing.assert_array_equal(np.frombuffer(base64.b64decode(line[4]), np.float32).reshape(2, 4), recs[0].boxes)
    back = read_bottom_up_tsv(p)
    assert [r.image_id for r in back] == [r.image_id for r in recs]
    for a, b in zip(back, recs):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.features, b.features)
        assert a.features.shape == (b.num_boxes, 2048) and (a.image_w, a.image_h) == (640, 480)
    nb = back[0].normalized_boxes()
    np.testing.assert_allclose(nb, recs[0].boxes / np.array([640, 480, 640, 480], np.float32))


def test_lxmert_tsv_layout(tmp_path):
    rec = _record(5, n=4, d=16)
    rec.extra = {"objects_id": np.arange(4), "objects_conf": np.full(4, 0.5, np.float32)}
    p = write_bottom_up_tsv(tmp_path / "lx.tsv", [rec], layout="lxmert")
    line = p.read_text().split("\t")
    assert len(line) == 10 and line[1] == "480" and line[2] == "640"  # img_h before img_w
    (back,) = read_bottom_up_tsv(p)
    assert (back.image_w, back.image_h) == (640, 480)
    np.testing.assert_array_equal(back.extra["objects_id"], np.arange(4))
    np.testing.assert_array_equal(back.features, rec.features)


def test_tsv_errors(tmp_path):
    rec = _record(0, n=2, d=8)
    good = write_bottom_up_tsv(tmp_path / "g.tsv", [rec]).read_text().rstrip("\n").split("\t")
    bad = list(good)
    bad[3] = "3"  # num_boxes disagrees with the arrays
    (tmp_path / "b.tsv").write_text("\t".join(bad) + "\n")
    with pytest.raises(ValueError, match="num_boxes"):
        read_bottom_up_tsv(tmp_path / "b.tsv")
    (tmp_path / "c.tsv").write_text("\t".join(good[:5]) + "\n")
    with pytest.raises(ValueError, match="tab-separated fields"):
        read_bottom_up_tsv(tmp_path / "c.tsv")
    out = _record(0, n=1, d=8)
    out.boxes[0, 2] = 700.0
    (tmp_path / "d.tsv").write_text(write_bottom_up_tsv(tmp_path / "tmp.tsv", [out]).read_text())
    with pytest.raises(ValueError, match="inside the image"):
        read_bottom_up_tsv(tmp_path / "d.tsv")


def test_npz_round_trip_and_our_detector_in_the_same_layout(tmp_path, trained):
    rec = _record(1, n=5, d=32)
    p = write_bottom_up_npz(tmp_path / "1.npz", rec)
    back = read_bottom_up_npz(p)
    assert back.image_id == rec.image_id and back.num_boxes == 5
    np.testing.assert_array_equal(back.features, rec.features)
    np.save(tmp_path / "x.npy", {"image_id": 1})
    with pytest.raises(ValueError, match="allow_pickle"):
        read_bottom_up_npz(tmp_path / "x.npy")
    model, _ = trained
    sc = make_scenes(3, seed=9)[1]
    r = extract_regions(model, sc)
    tsv = write_bottom_up_tsv(tmp_path / "ours.tsv", [record_from_regions(r, sc.scene_id)], layout="lxmert")
    (ours,) = read_bottom_up_tsv(tsv)
    np.testing.assert_allclose(ours.boxes, sc.boxes())
    np.testing.assert_allclose(ours.features, r.features.numpy())
