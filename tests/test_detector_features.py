"""Region features from the stand-in detector, as the four recipes read them.

Guards the detector path of :mod:`vlp_course.data.vl_tensors` against independent computations:

* :func:`detector_regions` rows equal a one-image :func:`vlp_course.data.detector.extract_regions`,
  padding is empty, and the cache (``cache_dir()/scene-regions-*``) is reused when intact and rebuilt
  when damaged;
* :meth:`SceneTensors.features_with_hidden_pixels` (VL-BERT's end-to-end masking) equals a
  re-extraction of the image with the hidden objects' pixels zeroed by hand (numpy slicing);
* :meth:`SceneTensors.with_wrong_scenes` (the pretraining control) is a derangement of the training
  images that moves every visual tensor together and nothing else;
* the low-label question subset, the padding trim of the batches, the per-answer-type accuracy,
  ``Recipe(pairing=...)`` and VL-BERT's pretraining step in detector mode.

Every test uses 120 scenes (seed 3, 20 held out), built once per module in a private cache folder.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from vlp_course import files
from vlp_course.data import vl_tensors
from vlp_course.data.detector import SceneDetector, extract_regions, load_detector
from vlp_course.data.scenes import COLORS, SHAPES, SIZES
from vlp_course.data.vl_tensors import (FEATURE_WIDTH, FEATURES, SceneTensors, _trim, build_scene_tensors,
                                        detector_regions)
from vlp_course.data.vqa import vqa_accuracy
from vlp_course.models.vlbert import zero_box_pixels
from vlp_course.pretraining.losses import IGNORE_INDEX
from vlp_course.recipes.base import PAIRINGS, Recipe, scene_tensors
from vlp_course.recipes import run
from vlp_course.recipes.run import accuracy_by_answer_type, finetune_from, vqa_predictions
from vlp_course.recipes.vlbert import VLBERTAdapter
from vlp_course.text.vocab import PAD

N_IMAGES, SEED, N_TEST = 120, 3, 20
TOL = dict(atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Fixtures: one private cache folder and the datasets built once per module
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    """Point ``files.cache_dir()`` (``$VLP_COURSE_CACHE``) at a fresh folder for this module."""
    folder = tmp_path_factory.mktemp("vlp_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(files.CACHE_ENV, str(folder))
        yield folder


@pytest.fixture(scope="module")
def det():
    return load_detector()


@pytest.fixture(scope="module")
def st(module_cache):
    return build_scene_tensors(N_IMAGES, seed=SEED, n_test=N_TEST)


@pytest.fixture(scope="module")
def st_oracle(module_cache):
    return build_scene_tensors(N_IMAGES, seed=SEED, n_test=N_TEST, features="oracle")


@pytest.fixture(scope="module")
def vlbert(module_cache):
    """(recipe, SceneTensors, adapter) of a small VL-BERT in detector mode; the text corpus loaded."""
    recipe = Recipe(kind="vlbert", n_images=N_IMAGES, n_test=N_TEST, seed=SEED, features="detector")
    s = scene_tensors(recipe)
    adapter = VLBERTAdapter(s, recipe)
    adapter.text_only  # noqa: B018  (load the text-only corpus outside the timed tests)
    return recipe, s, adapter


def zeroed_extraction(det, scene, hide):
    """Independent reference: zero objects ``hide``'s pixels with numpy slicing (both ends included,
    clamped to the image, as VL-BERT's dataset does), then extract every region of the scene."""
    img = scene.image.copy()
    H, W = img.shape[:2]
    for j in hide:
        x1, y1, x2, y2 = (int(v) for v in scene.boxes()[j])
        img[min(y1, H - 1):min(y2, H - 1) + 1, min(x1, W - 1):min(x2, W - 1) + 1] = 0
    return extract_regions(det, img, scene.boxes())


class _Refuses:
    """A stand-in detector that fails if it is run: proves a result came from the cache."""

    def parameters(self):
        raise AssertionError("the detector ran, but the result should have come from the cache")

    def __getattr__(self, name):
        raise AssertionError(f"the detector ran ({name}), but the result should have come from the cache")


# ---------------------------------------------------------------------------------------------
# 1. detector_regions equals an independent extraction
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("i", [0, 1, 4, 9, 17])
def test_detector_regions_equal_one_image_extraction(st, det, i):
    # guards: the batched extraction (whole-image box first, split per image) lines up with extract_regions
    scene = st.ds.scenes[i]
    ref = extract_regions(det, scene)
    n = ref.num_boxes
    assert int(st.region_mask[i].sum()) == n == len(scene.objects)
    torch.testing.assert_close(st.feats[i, :n], ref.features, **TOL)
    torch.testing.assert_close(st.det_probs[i, :n], ref.class_probs, **TOL)
    torch.testing.assert_close(st.attr_probs[i, :n], ref.attr_probs, **TOL)
    torch.testing.assert_close(st.image_feats[i], ref.image_feature, **TOL)
    torch.testing.assert_close(st.boxes[i, :n], torch.as_tensor(scene.boxes(), dtype=torch.float32))
    assert st.shape_labels[i, :n].tolist() == scene.labels().tolist()
    assert st.color_labels[i, :n].tolist() == scene.color_labels().tolist()
    assert st.size_labels[i, :n].tolist() == scene.size_labels().tolist()


def test_detector_regions_padding_and_labels(st):
    # guards: padding rows are empty (zero features/probs, box (0, 0, 1, 1), -100 labels); labels are the argmax
    real, pad = st.region_mask.bool(), ~st.region_mask.bool()
    assert pad.any(), "the test needs images with fewer objects than N"
    assert st.feature_width == 128 and st.feats.shape == (N_IMAGES, st.feats.shape[1], 128)
    assert (st.feats[pad] == 0).all() and (st.det_probs[pad] == 0).all() and (st.attr_probs[pad] == 0).all()
    assert (st.boxes[pad] == torch.tensor([0.0, 0.0, 1.0, 1.0])).all()
    for name in ("shape_labels", "color_labels", "size_labels", "det_labels", "attr_labels"):
        assert (getattr(st, name)[pad] == IGNORE_INDEX).all(), name
        assert (getattr(st, name)[real] >= 0).all(), name
    torch.testing.assert_close(st.det_probs[real].sum(-1), torch.ones(int(real.sum())))
    torch.testing.assert_close(st.attr_probs[real].sum(-1), torch.ones(int(real.sum())))
    assert torch.equal(st.det_labels[real], st.det_probs[real].argmax(-1))
    assert torch.equal(st.attr_labels[real], st.attr_probs[real].argmax(-1))


def test_detector_labels_match_ground_truth(st):
    # guards: the detector's top shape / colour are right (the targets of the masked-region losses)
    real = st.region_mask.bool()
    assert (st.det_labels[real] == st.shape_labels[real]).float().mean() > 0.95
    assert (st.attr_labels[real] == st.color_labels[real]).float().mean() > 0.95


def test_max_regions_truncates_and_pads(st, det, monkeypatch, tmp_path):
    # guards: max_regions keeps the first objects of a crowded scene and pads the others
    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path))
    scenes = [st.ds.scenes[i] for i in (0, 4)]  # 1 and 4 objects
    r = detector_regions(scenes, det, max_regions=2)
    assert r["feats"].shape == (2, 2, 128)
    assert r["region_mask"].tolist() == [[1, 0], [1, 1]]
    torch.testing.assert_close(r["feats"][1], st.feats[4, :2], **TOL)
    r6 = detector_regions(scenes, det, max_regions=6)
    assert r6["region_mask"].tolist() == [[1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0]]
    assert (r6["det_labels"][:, 4:] == IGNORE_INDEX).all()


def test_empty_scene_raises(st, det):
    empty = replace(st.ds.scenes[0], objects=[])
    with pytest.raises(ValueError, match="scene 1 has no object"):
        detector_regions([st.ds.scenes[1], empty], det, cache=False)


# ---------------------------------------------------------------------------------------------
# 2. the cache of region features
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def counted_extract(monkeypatch):
    """Count the detector runs of detector_regions (its module-level ``_extract``)."""
    calls = []
    real = vl_tensors._extract

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(vl_tensors, "_extract", counting)
    return calls


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0, msg=k)


def test_cache_reused_when_intact(st, det, monkeypatch, tmp_path, counted_extract):
    # guards: a second call reads the cache (no detector run) and returns the same tensors
    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path))
    scenes = st.ds.scenes[:6]
    first = detector_regions(scenes, det)
    (folder,) = tmp_path.glob("scene-regions-*")
    assert files.check_manifest(folder) == {"images": 6, "regions": first["feats"].shape[1], "dim": 128}
    second = detector_regions(scenes, det)
    assert len(counted_extract) == 1
    _assert_same(first, second)
    torch.testing.assert_close(first["feats"], st.feats[:6, :first["feats"].shape[1]], **TOL)


def test_cache_off_writes_nothing(st, det, monkeypatch, tmp_path):
    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path))
    detector_regions(st.ds.scenes[:3], det, cache=False)
    assert not list(tmp_path.glob("scene-regions-*"))


def test_corrupted_cache_file_is_rebuilt(st, det, monkeypatch, tmp_path, counted_extract):
    # guards: garbage in regions.safetensors (its SHA-256 no longer matches the manifest) -> re-extracted
    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path))
    scenes = st.ds.scenes[:6]
    first = detector_regions(scenes, det)
    (folder,) = tmp_path.glob("scene-regions-*")
    (folder / "regions.safetensors").write_bytes(b"this is not a safetensors file" * 10)
    again = detector_regions(scenes, det)
    assert len(counted_extract) == 2
    _assert_same(first, again)
    assert files.check_manifest(folder) is not None  # the entry is whole again
    detector_regions(scenes, det)
    assert len(counted_extract) == 2  # ... and read from then on


def test_unreadable_cache_file_with_matching_manifest_is_rebuilt(st, det, monkeypatch, tmp_path, counted_extract):
    # guards: a damaged file whose manifest was (wrongly) rewritten to match: load fails -> rebuilt, not raised
    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path))
    scenes = st.ds.scenes[:6]
    first = detector_regions(scenes, det)
    (folder,) = tmp_path.glob("scene-regions-*")
    (folder / "regions.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    files.write_manifest(folder, ["regions.safetensors"], {"images": 6})
    again = detector_regions(scenes, det)
    assert len(counted_extract) == 2
    _assert_same(first, again)


# guards: a manifest of non-UTF-8 bytes or with a wrong layout counts as a damaged entry and is rebuilt
@pytest.mark.parametrize("manifest", [b"\xff\xfe garbage \x00\x81", b'{"files": ["regions.safetensors"]}'])
def test_corrupted_manifest_is_rebuilt(st, det, monkeypatch, tmp_path, manifest):
    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path))
    first = detector_regions(st.ds.scenes[:3], det)
    (folder,) = tmp_path.glob("scene-regions-*")
    (folder / "manifest.json").write_bytes(manifest)
    _assert_same(first, detector_regions(st.ds.scenes[:3], det))


def test_cache_key_depends_on_detector_weights(st, det, monkeypatch, tmp_path, counted_extract):
    # guards: another detector's features are never served from the first one's cache entry
    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path))
    scenes = st.ds.scenes[:4]
    detector_regions(scenes, det)
    torch.manual_seed(123)
    other = SceneDetector().eval()
    theirs = detector_regions(scenes, other)
    assert len(counted_extract) == 2 and len(list(tmp_path.glob("scene-regions-*"))) == 2
    ref = extract_regions(other, scenes[2])
    torch.testing.assert_close(theirs["feats"][2, :ref.num_boxes], ref.features, **TOL)


# ---------------------------------------------------------------------------------------------
# 3. features="oracle" | "detector"
# ---------------------------------------------------------------------------------------------

def test_feature_widths(st, st_oracle):
    # guards: the oracle comparison keeps its one-hot width; the detector gives its D = 128
    assert FEATURE_WIDTH == len(SHAPES) + len(COLORS) + len(SIZES) == 15
    assert st_oracle.feature_width == FEATURE_WIDTH and st_oracle.image_feats.shape == (N_IMAGES, FEATURE_WIDTH)
    assert st.feature_width == 128 and st.image_feats.shape == (N_IMAGES, 128)
    assert (st.features, st_oracle.features) == ("detector", "oracle") and FEATURES == ("detector", "oracle")
    # the same scenes and text either way
    assert torch.equal(st.region_mask, st_oracle.region_mask) and torch.equal(st.q_ids, st_oracle.q_ids)
    assert torch.equal(st.shape_labels, st_oracle.shape_labels)


def test_unknown_features_value_names_the_choices(module_cache):
    with pytest.raises(ValueError, match=r"detector.*oracle.*'pixels'"):
        build_scene_tensors(N_IMAGES, seed=SEED, n_test=N_TEST, features="pixels")


# ---------------------------------------------------------------------------------------------
# 4. features_with_hidden_pixels (VL-BERT's end-to-end masking)
# ---------------------------------------------------------------------------------------------

def test_nothing_hidden_returns_cached_features(st, monkeypatch):
    # guards: rows with nothing hidden (or only padding "hidden") are the cached features, no detector run
    monkeypatch.setattr(st, "detector", _Refuses())
    images = torch.tensor([0, 4, 9, 4])
    hidden = torch.zeros(4, st.feats.shape[1], dtype=torch.bool)
    hidden[0, 3] = True  # image 0 has one object: slot 3 is padding
    feats, whole = st.features_with_hidden_pixels(images, hidden, zero_box_pixels)
    assert torch.equal(feats, st.feats[images]) and torch.equal(whole, st.image_feats[images])


def test_hidden_object_equals_reextraction(st, det):
    # guards: hiding object j zeroes its pixels and re-extracts every feature, the whole image's included
    i, j = 4, 2  # image 4 has four objects
    scene = st.ds.scenes[i]
    images = torch.tensor([i, 9, i])
    hidden = torch.zeros(3, st.feats.shape[1], dtype=torch.bool)
    hidden[0, j] = True
    hidden[1, [0, 1]] = True
    hidden[2, j] = True  # the same (image, hidden set) twice in a batch
    feats, whole = st.features_with_hidden_pixels(images, hidden, zero_box_pixels)
    ref = zeroed_extraction(det, scene, [j])
    n = ref.num_boxes
    torch.testing.assert_close(feats[0, :n], ref.features, **TOL)
    torch.testing.assert_close(whole[0], ref.image_feature, **TOL)
    torch.testing.assert_close(feats[2], feats[0], atol=0, rtol=0)
    assert (feats[0, n:] == 0).all()  # padding stays empty
    # the hidden object's feature and the whole image's really changed
    assert (feats[0, j] - st.feats[i, j]).abs().max() > 1.0
    assert (whole[0] - st.image_feats[i]).abs().max() > 1e-3
    ref9 = zeroed_extraction(det, st.ds.scenes[9], [0, 1])
    torch.testing.assert_close(feats[1, :ref9.num_boxes], ref9.features, **TOL)
    torch.testing.assert_close(whole[1], ref9.image_feature, **TOL)


def test_hidden_pixels_second_call_hits_cache(st, det, monkeypatch):
    # guards: each (image, hidden set) is extracted once; a new set still runs the detector
    images = torch.tensor([7])
    hidden = torch.zeros(1, st.feats.shape[1], dtype=torch.bool)
    hidden[0, 0] = True
    first = st.features_with_hidden_pixels(images, hidden, zero_box_pixels)
    monkeypatch.setattr(st, "detector", _Refuses())
    again = st.features_with_hidden_pixels(images, hidden, zero_box_pixels)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    other = hidden.clone()
    other[0, 0], other[0, 1] = False, True
    assert int(st.region_mask[7].sum()) >= 2
    with pytest.raises(AssertionError, match="detector ran"):
        st.features_with_hidden_pixels(images, other, zero_box_pixels)


def test_hidden_pixels_errors(st, st_oracle):
    N = st.feats.shape[1]
    with pytest.raises(ValueError, match="detector"):
        st_oracle.features_with_hidden_pixels(torch.tensor([0]), torch.zeros(1, N, dtype=torch.bool), zero_box_pixels)
    with pytest.raises(ValueError, match=r"hidden must be \(B, N\)"):
        st.features_with_hidden_pixels(torch.tensor([0, 1]), torch.zeros(2, N + 1, dtype=torch.bool), zero_box_pixels)
    with pytest.raises(ValueError, match=r"hidden must be \(B, N\)"):
        st.features_with_hidden_pixels(torch.tensor([0, 1]), torch.zeros(1, N, dtype=torch.bool), zero_box_pixels)


def test_zero_box_pixels_includes_both_ends_and_clamps():
    # guards: the reference slicing above agrees with zero_box_pixels (int() coordinates, ends included)
    img = torch.ones(1, 3, 8, 8)
    boxes = torch.tensor([[[1.7, 2.0, 3.2, 4.9], [6.0, 6.0, 9.5, 12.0]]])
    out = zero_box_pixels(img, boxes, torch.tensor([[True, True]]))
    expected = torch.ones(1, 3, 8, 8)
    expected[..., 2:5, 1:4] = 0  # rows 2..4, columns 1..3
    expected[..., 6:8, 6:8] = 0  # clamped to the image
    assert torch.equal(out, expected)
    assert torch.equal(zero_box_pixels(img, boxes, torch.tensor([[False, False]])), img)


# ---------------------------------------------------------------------------------------------
# 5. with_wrong_scenes (the control of the pretraining gain)
# ---------------------------------------------------------------------------------------------

def _source_of(wrong, st) -> list[int]:
    """For every training image of ``wrong``, the index of the image of ``st`` whose whole-image feature it has."""
    n = st.n_train
    same = (wrong.image_feats[:n, None] == st.image_feats[None, :n]).all(-1)  # (n, n) exact row equality
    assert (same.sum(1) == 1).all(), "a feature that belongs to no (or to several) training images"
    return same.float().argmax(1).tolist()


def test_wrong_scenes_is_a_derangement_of_the_training_images(st):
    n = st.n_train
    wrong = st.with_wrong_scenes(seed=0)
    src = _source_of(wrong, st)
    assert all(s != i for i, s in enumerate(src))  # no image keeps its own features
    assert sorted(src) == list(range(n))  # each training image's features used exactly once
    assert wrong.scene_of.tolist() == src + list(range(n, N_IMAGES))
    for name in SceneTensors.VISUAL:  # every visual tensor moves with the features
        assert torch.equal(getattr(wrong, name)[:n], getattr(st, name)[torch.tensor(src)]), name
        assert torch.equal(getattr(wrong, name)[n:], getattr(st, name)[n:]), name  # held out unchanged
    for name in ("cap_ids", "cap_mask", "cap_image", "q_ids", "q_mask", "q_image", "q_target"):
        assert torch.equal(getattr(wrong, name), getattr(st, name)), name
    assert wrong.n_train == n and wrong.ds is st.ds and st.scene_of is None  # the original is untouched



def test_wrong_scenes_is_deterministic_per_seed(st):
    a, b, c = st.with_wrong_scenes(seed=5), st.with_wrong_scenes(seed=5), st.with_wrong_scenes(seed=6)
    assert torch.equal(a.scene_of, b.scene_of) and torch.equal(a.feats, b.feats)
    assert not torch.equal(a.scene_of, c.scene_of)
    # the derangement of a derangement still points back at the original scenes
    twice = a.with_wrong_scenes(seed=1)
    assert torch.equal(twice.feats, st.feats[twice.scene_of])


def test_wrong_scenes_needs_two_training_images(st):
    with pytest.raises(ValueError, match="at least 2"):
        replace(st, n_train=1).with_wrong_scenes()


def test_wrong_scenes_hidden_pixels_come_from_the_shown_scene(st, det):
    # guards: pixel masking re-extracts the scene the image now shows (scene_of), not its original pixels,
    # and the wrong-scenes copy does not share the original's cache of re-extracted features
    wrong = st.with_wrong_scenes(seed=0)
    i = 2
    hidden = torch.zeros(1, st.feats.shape[1], dtype=torch.bool)
    hidden[0, 0] = True
    st.features_with_hidden_pixels(torch.tensor([i]), hidden, zero_box_pixels)  # fills the original's cache
    feats, whole = wrong.features_with_hidden_pixels(torch.tensor([i]), hidden, zero_box_pixels)
    shown = int(wrong.scene_of[i])
    assert shown != i
    ref = zeroed_extraction(det, st.ds.scenes[shown], [0])
    torch.testing.assert_close(feats[0, :ref.num_boxes], ref.features, **TOL)
    torch.testing.assert_close(whole[0], ref.image_feature, **TOL)


# ---------------------------------------------------------------------------------------------
# 6. labelled_questions and vqa_batch(questions=...)
# ---------------------------------------------------------------------------------------------

def test_labelled_questions(st):
    train = st.rows("questions", "train")
    rows = st.labelled_questions(25, seed=1)
    assert len(rows) == 25 and len(set(rows.tolist())) == 25
    assert (st.q_image[rows] < st.n_train).all() and set(rows.tolist()) <= set(train.tolist())
    assert torch.equal(rows, st.labelled_questions(25, seed=1))
    assert not torch.equal(rows, st.labelled_questions(25, seed=2))
    assert torch.equal(st.labelled_questions(len(train), seed=0), train)  # all of them, sorted
    for bad in (0, -1, len(train) + 1):
        with pytest.raises(ValueError, match="n must be in"):
            st.labelled_questions(bad)


def test_vqa_batch_draws_only_from_the_given_questions(st):
    rows = st.labelled_questions(5, seed=0)
    b = st.vqa_batch(step=3, batch_size=64, questions=rows)
    assert set(b["rows"].tolist()) <= set(rows.tolist()) and len(set(b["rows"].tolist())) > 1
    T = b["input_ids"].shape[1]
    assert torch.equal(b["input_ids"], st.q_ids[b["rows"], :T])
    assert torch.equal(b["image"], st.q_image[b["rows"]]) and torch.equal(b["soft_scores"], st.q_target[b["rows"]])
    assert torch.equal(st.vqa_batch(3, 64, questions=rows)["rows"], b["rows"])  # same step, same batch
    plain = st.vqa_batch(step=3, batch_size=64)
    assert (st.q_image[plain["rows"]] < st.n_train).all()


# ---------------------------------------------------------------------------------------------
# 7. the padding trim of the batches
# ---------------------------------------------------------------------------------------------

def test_trim_by_hand():
    ids = torch.tensor([[2, 7, 8, 3, 0, 0], [2, 9, 3, 0, 0, 0]])
    got_ids, got_mask = _trim(ids, (ids != 0).long())
    assert got_ids.tolist() == [[2, 7, 8, 3], [2, 9, 3, 0]]
    assert got_mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    pad_only = torch.zeros(2, 5, dtype=torch.long)
    assert _trim(pad_only, pad_only)[0].shape == (2, 1)  # never zero columns
    empty = torch.zeros(0, 5, dtype=torch.long)
    assert _trim(empty, empty)[0].shape == (0, 5)


def test_batches_have_no_padding_only_column(st):
    pad = st.ids[PAD]
    b = st.vqa_batch(step=0, batch_size=16)
    T = b["input_ids"].shape[1]
    full = st.q_ids[b["rows"]]
    assert T == int(st.q_mask[b["rows"]].sum(1).max()) and b["attention_mask"][:, -1].any()
    assert torch.equal(b["input_ids"], full[:, :T]) and (full[:, T:] == pad).all()
    assert torch.equal(b["attention_mask"], st.q_mask[b["rows"], :T])
    p = st.pretrain_batch(step=0, batch_size=16)
    assert p["attention_mask"][:, -1].any() and p["input_ids"].shape[1] <= st.cap_ids.shape[1]
    assert torch.equal(p["attention_mask"], (p["input_ids"] != pad).long())
    # each trimmed caption is a caption of the dataset, padded back
    padded = torch.nn.functional.pad(p["input_ids"], (0, st.cap_ids.shape[1] - p["input_ids"].shape[1]), value=pad)
    assert all((st.cap_ids == row).all(1).any() for row in padded)


# ---------------------------------------------------------------------------------------------
# 8. accuracy by answer type, and the predictions it reads
# ---------------------------------------------------------------------------------------------

def test_accuracy_by_answer_type_by_hand():
    preds = [{"answer_type": "yes/no", "accuracy": 1.0}, {"answer_type": "yes/no", "accuracy": 0.0},
             {"answer_type": "number", "accuracy": 0.3}, {"answer_type": "other", "accuracy": 0.6},
             {"answer_type": "number", "accuracy": 0.9}, {"answer_type": "yes/no", "accuracy": 1.0}]
    got = accuracy_by_answer_type(preds)
    assert set(got) == {"yes/no", "number", "other", "all"}
    assert got["yes/no"][1] == 3 and math.isclose(got["yes/no"][0], 2 / 3)
    assert got["number"][1] == 2 and math.isclose(got["number"][0], 0.6)
    assert got["other"] == (0.6, 1)
    assert got["all"][1] == 6 and math.isclose(got["all"][0], 3.8 / 6)
    with pytest.raises(ValueError):
        accuracy_by_answer_type([])


def test_vqa_predictions_plumbing(st):
    # guards: one dict per held-out question, in row order across batches, scored with vqa_accuracy
    seen = []

    def always(k):
        def fn(b):
            seen.append(b["rows"].clone())
            assert b["attention_mask"][:, -1].any()
            logits = torch.zeros(len(b["rows"]), len(st.answers))
            logits[:, k] = 1.0
            return logits
        return fn

    test_rows = st.rows("questions", "test")
    preds = st.vqa_predictions(always(0), batch_size=7)
    assert torch.equal(torch.cat(seen), test_rows) and len(seen) == math.ceil(len(test_rows) / 7)
    assert [p["row"] for p in preds] == test_rows.tolist()
    answer = st.answers.decode(0)
    for p in preds[:30]:
        q = st.ds.questions[p["row"]]
        assert p["image"] == int(q.image_id) >= st.n_train and p["question"] == q.question
        assert p["answer_type"] == q.answer_type and p["predicted"] == answer and p["answers"] == list(q.answers)
        assert p["accuracy"] == vqa_accuracy(answer, q.answers)
    # the accuracy of a constant answer, type by type, from the dataset directly
    by_type = accuracy_by_answer_type(preds)
    for t, (acc, count) in by_type.items():
        qs = [st.ds.questions[r] for r in test_rows.tolist() if t == "all" or st.ds.questions[r].answer_type == t]
        assert count == len(qs) and math.isclose(acc, float(np.mean([vqa_accuracy(answer, q.answers) for q in qs])))
    assert math.isclose(st.score_vqa(always(0)), by_type["all"][0])


def test_run_vqa_predictions_uses_the_adapter(st):
    # guards: recipes.run.vqa_predictions puts the model in eval mode and reads adapter.vqa_step's logits
    class Out:
        def __init__(self, logits):
            self.logits = {"vqa": logits}

    class Adapter:
        def __init__(self):
            self.st, self.zero = st, []

        def vqa_step(self, model, batch, zero_image=False):
            self.zero.append(zero_image)
            return Out(torch.nn.functional.one_hot(torch.full((len(batch["rows"]),), 1), len(st.answers)).float())

    model = torch.nn.Linear(1, 1).train()
    adapter = Adapter()
    preds = vqa_predictions(model, adapter, zero_image=True, split="train")
    assert not model.training and set(adapter.zero) == {True}
    assert len(preds) == len(st.rows("questions", "train"))
    assert {p["predicted"] for p in preds} == {st.answers.decode(1)}


# ---------------------------------------------------------------------------------------------
# 9. Recipe(pairing=...)
# ---------------------------------------------------------------------------------------------

def test_recipe_rejects_unknown_pairing():
    assert PAIRINGS == ("aligned", "wrong_scenes")
    with pytest.raises(ValueError, match="pairing must be one of"):
        Recipe(pairing="bad")


def test_wrong_scenes_recipe_permutes_features(st, module_cache):
    # guards: scene_tensors(recipe) applies the control with the recipe's seed; "aligned" leaves it alone
    aligned = scene_tensors(Recipe(n_images=N_IMAGES, n_test=N_TEST, seed=SEED))
    wrong = scene_tensors(Recipe(n_images=N_IMAGES, n_test=N_TEST, seed=SEED, pairing="wrong_scenes"))
    assert aligned.scene_of is None and torch.equal(aligned.feats, st.feats)
    assert torch.equal(wrong.scene_of, st.with_wrong_scenes(SEED).scene_of)
    n = st.n_train
    assert (wrong.scene_of[:n] != torch.arange(n)).all()
    assert torch.equal(wrong.feats, aligned.feats[wrong.scene_of])
    assert torch.equal(wrong.det_probs, aligned.det_probs[wrong.scene_of])
    assert torch.equal(wrong.q_ids, aligned.q_ids) and torch.equal(wrong.cap_ids, aligned.cap_ids)


# ---------------------------------------------------------------------------------------------
# 10. VL-BERT in detector mode
# ---------------------------------------------------------------------------------------------

def test_vlbert_regions_put_the_whole_image_first(vlbert, st_oracle):
    # guards: region 0 is the detector's whole-image box feature (detector) or the regions' mean (oracle)
    recipe, s, adapter = vlbert
    assert adapter.pixel_masking and adapter.config().visual_feature_size == 128
    batch = {"image": torch.tensor([4, 0, 9])}
    feats, boxes, rmask = adapter.regions(batch)
    assert torch.equal(feats[:, 0], s.image_feats[batch["image"]])
    assert torch.equal(feats[:, 1:], s.feats[batch["image"]])
    assert boxes[0, 0].tolist() == [0.0, 0.0, s.image_size - 1.0, s.image_size - 1.0]
    assert rmask[:, 0].tolist() == [1, 1, 1] and torch.equal(rmask[:, 1:], s.region_mask[batch["image"]])
    oracle = VLBERTAdapter(st_oracle, Recipe(kind="vlbert", n_images=N_IMAGES, n_test=N_TEST, seed=SEED,
                                             features="oracle"))
    assert not oracle.pixel_masking
    of, _, _ = oracle.regions(batch)
    m = st_oracle.region_mask[4].bool()
    torch.testing.assert_close(of[0, 0], st_oracle.feats[4][m].mean(0))


def test_vlbert_pretrain_step_uses_reextracted_features(vlbert, det, monkeypatch):
    # guards: the features VL-BERT sees for a hidden region (and region 0) come from the zeroed pixels
    recipe, s, adapter = vlbert
    torch.manual_seed(0)
    model = adapter.pretraining_model()
    seen = {}
    forward = model.forward

    def capture(*args, **kwargs):
        seen["visual_feats"], seen["kwargs"] = args[1].detach().clone(), kwargs
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", capture)
    batch = s.pretrain_batch(step=0, batch_size=16)
    out = adapter.pretrain_step(model, batch, torch.Generator().manual_seed(5))
    assert math.isfinite(out.loss.item()) and set(out.losses) == {"mlm", "mrc", "mlm_text"}
    assert all(math.isfinite(v.item()) for v in out.losses.values())
    assert seen["kwargs"]["region_masking"] == "pixels"
    hidden, vf = seen["kwargs"]["hidden_regions"], seen["visual_feats"]  # (B, N+1), (B, N+1, 128)
    assert not hidden[:, 0].any() and hidden.any(), "the seed should hide some region (never region 0)"
    for r, i in enumerate(batch["image"].tolist()):
        hide = torch.nonzero(hidden[r, 1:]).squeeze(1).tolist()
        if not hide:  # nothing hidden: the cached features themselves
            assert torch.equal(vf[r, 0], s.image_feats[i]) and torch.equal(vf[r, 1:], s.feats[i])
            continue
        ref = zeroed_extraction(det, s.ds.scenes[i], hide)
        torch.testing.assert_close(vf[r, 1:1 + ref.num_boxes], ref.features, **TOL)
        torch.testing.assert_close(vf[r, 0], ref.image_feature, **TOL)
        assert (vf[r, 1 + hide[0]] - s.feats[i, hide[0]]).abs().max() > 1.0


def test_finetune_from_copies_the_encoder_and_uses_the_subset(vlbert, monkeypatch):
    # guards: finetune_from starts from the source's encoder, draws only the given questions, then scores
    recipe, s, adapter = vlbert
    torch.manual_seed(1)
    source = adapter.pretraining_model()
    rows = s.labelled_questions(6, seed=0)
    drawn, scored = [], []
    real = s.vqa_batch

    def recording(*a, **k):
        b = real(*a, **k)
        drawn.append(b["rows"])
        return b

    monkeypatch.setattr(s, "vqa_batch", recording)
    monkeypatch.setattr(run, "evaluate_vqa", lambda m, a, zero_image=False: scored.append((m, a, zero_image)) or 0.25)
    qa, acc, seconds = finetune_from(source, adapter, 1, questions=rows, batch=8, lr=1e-12, warmup=0)
    assert drawn and set(torch.cat(drawn).tolist()) <= set(rows.tolist())
    assert acc == 0.25 and scored == [(qa, adapter, False)] and seconds > 0
    src, own = source.state_dict(), qa.state_dict()
    shared = [k for k in own if k in src]
    assert "image_feature_extractor.obj_downsample.1.weight" in shared and len(shared) > 10
    for k in shared:  # lr 1e-12: the copied weights are still the source's
        torch.testing.assert_close(own[k], src[k], atol=1e-6, rtol=0, msg=k)
