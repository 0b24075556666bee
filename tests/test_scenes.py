"""The synthetic scenes: determinism, geometry, scene graph, captions, hard negatives, NLVR2, files, cache."""

from __future__ import annotations

import json
import time
from collections import Counter

import numpy as np
import pytest

from vlp_course.boxes import validate_xyxy
from vlp_course.data import captions as capmod
from vlp_course.data.captions import Claim, Desc, claim_holds, hard_negative, scene_captions
from vlp_course.data.coco import load_coco_captions, load_coco_instances, write_coco_captions, write_coco_instances
from vlp_course.data.dataset import build_vl_scenes, load_vl_scenes
from vlp_course.data.nlvr2 import load_nlvr2, make_nlvr2, nlvr2_statements, write_nlvr2
from vlp_course.data.scenes import (
    COLOR_RGB, COLORS, SHAPES, SIZES, SceneObject, make_scene, make_scenes, relation_holds, relations, render_scene,
)


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(400, seed=11)


# --- generator ----------------------------------------------------------------------------------

def test_deterministic_and_prefix_stable():
    a, b = make_scenes(30, seed=3), make_scenes(30, seed=3)
    assert np.array_equal(a.images, b.images) and a.objects == b.objects
    c = make_scenes(5, seed=3)
    assert np.array_equal(c.images, a.images[:5]) and c.objects == a.objects[:5]
    assert np.array_equal(make_scene(3, 7).image, a[7].image)
    assert not np.array_equal(make_scenes(30, seed=4).images, a.images)


def test_images_and_counts(scenes):
    assert scenes.images.shape == (400, 64, 64, 3) and scenes.images.dtype == np.uint8
    n = Counter(len(o) for o in scenes.objects)
    assert set(n) <= {1, 2, 3, 4} and min(n.values()) > 50
    seen = Counter((o.shape, o.color, o.size) for objs in scenes.objects for o in objs)
    assert {s for s, _, _ in seen} == set(SHAPES) and {c for _, c, _ in seen} == set(COLORS)
    assert {z for _, _, z in seen} == set(SIZES) and len(SHAPES) >= 6 and len(COLORS) >= 6


def test_boxes_inside_tight_and_coloured(scenes):
    for sc in scenes[:100]:
        b = sc.boxes()
        validate_xyxy(b, normalized=False, image_size=(64, 64))
        for o in sc.objects:
            x1, y1, x2, y2 = o.box
            patch = sc.image[y1:y2, x1:x2].astype(int)
            target = np.array(COLOR_RGB[o.color])
            close = (np.abs(patch - target).max(-1) <= 12)
            # the object's colour fills a good part of its box (a later object may cover a corner)
            assert close.mean() > 0.25, (o, close.mean())
            # tight: colour reaches the first and last columns of the box somewhere
            assert close[:, 0].any() or close[:, -1].any()
        # overlaps stay small
        for i, p in enumerate(sc.objects):
            for q in sc.objects[i + 1:]:
                iw = min(p.box[2], q.box[2]) - max(p.box[0], q.box[0])
                ih = min(p.box[3], q.box[3]) - max(p.box[1], q.box[1])
                if iw > 0 and ih > 0:
                    assert iw * ih <= 0.15 * min(p.side, q.side) ** 2 + 1e-9


def test_labels_and_textured_background(scenes):
    sc = scenes[0]
    assert list(sc.labels()) == [SHAPES.index(o.shape) for o in sc.objects]
    assert sc.boxes().dtype == np.float32 and sc.boxes().shape == (len(sc.objects), 4)
    # textured: the background is not one flat colour; plain is
    assert len(np.unique(scenes.images[:, :2, :2].reshape(-1, 3), axis=0)) > 10
    flat = make_scenes(3, background="plain", seed=0)
    assert (flat.images[:, 0, 0] == 28).all()
    t = scenes.tensors()
    assert t.shape == (400, 3, 64, 64) and 0 <= float(t.min()) and float(t.max()) <= 1


def test_hand_made_scene_relations():
    objs = [SceneObject("circle", "red", "small", 2, 40), SceneObject("square", "blue", "small", 18, 40),
            SceneObject("star", "green", "large", 30, 2)]
    sc = render_scene(objs, 64)
    rel = set(relations(sc))
    assert (0, "left of", 1) in rel and (1, "right of", 0) in rel and (0, "next to", 1) in rel
    assert (2, "above", 0) in rel and (0, "below", 2) in rel and (0, "right of", 1) not in rel
    assert (1, "next to", 2) not in rel or relation_holds(sc.objects[1], "next to", sc.objects[2], 64)
    assert sc.objects[0].box == (2, 40, 14, 52)  # small = 0.19 * 64 = 12 px


def test_scene_graph_is_consistent(scenes):
    conv = {"left of": "right of", "right of": "left of", "above": "below", "below": "above", "next to": "next to"}
    for sc in scenes[:200]:
        rel = set(relations(sc))
        for i, r, j in rel:
            assert (j, conv[r], i) in rel
            assert not (r in ("left of", "above") and (i, conv[r], j) in rel)


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="at least 1 object"):
        render_scene([], 64)
    with pytest.raises(ValueError, match="colour"):
        render_scene([SceneObject("circle", "magenta", "small", 0, 0)])
    with pytest.raises(ValueError, match="shape"):
        render_scene([SceneObject("hexagon", "red", "small", 0, 0)])
    with pytest.raises(ValueError, match="does not fit"):
        render_scene([SceneObject("circle", "red", "large", 60, 0)], 64)
    with pytest.raises(ValueError, match="too small"):
        make_scenes(5, image_size=16)
    with pytest.raises(ValueError, match="too small for 9 objects"):
        make_scenes(5, max_objects=9)
    with pytest.raises(ValueError, match="at least one object"):
        make_scenes(5, min_objects=0, max_objects=2)
    with pytest.raises(ValueError, match="positive"):
        make_scenes(0)
    with pytest.raises(ValueError, match="background"):
        make_scenes(2, background="stripes")


def test_speed_at_least_2000_scenes_per_second_or_close():
    make_scenes(20)
    t = time.perf_counter()
    make_scenes(1000, seed=1)
    dt = time.perf_counter() - t
    # the benchmark measures >= 2,000/s on an idle core; a loaded CI core still manages a quarter
    assert 1000 / dt > 500, f"{1000 / dt:.0f} scenes/s"


# --- captions and hard negatives -----------------------------------------------------------------

def test_captions_true_varied_and_partial(scenes):
    rng = np.random.default_rng(0)
    words, starts, partial, n_caps = Counter(), Counter(), 0, 0
    for sc in scenes[:200]:
        caps = scene_captions(sc, rng, 5)
        assert len(caps) == 5 and len({c.text for c in caps}) == 5
        for c in caps:
            assert claim_holds(sc, c.claim), c
            words.update(c.text.split())
            starts[c.text.split()[0]] += 1
            partial += c.claim.kind != "list"
            n_caps += 1
    assert len(starts) >= 10  # word order varies
    assert {"box", "beside", "beneath", "two", "circles"} <= set(words)  # synonyms, plurals, counts
    assert 0.5 < partial / n_caps < 0.95  # most captions mention only part of the scene


def _diff(c1: Claim, c2: Claim) -> int:
    """Number of single changes between two claims of the same kind (attribute, count or relation)."""
    n = 0
    for d1, d2 in ((c1.a, c2.a), (c1.b, c2.b)):
        if d1 is not None:
            n += sum(getattr(d1, k) != getattr(d2, k) for k in ("color", "shape", "size"))
    n += (c1.rel != c2.rel) + (c1.n != c2.n)
    for (d1, n1), (d2, n2) in zip(c1.items, c2.items):
        n += sum(getattr(d1, k) != getattr(d2, k) for k in ("color", "shape", "size")) + (n1 != n2)
    return n


def test_hard_negatives_are_false_and_differ_in_exactly_one_thing(scenes):
    rng = np.random.default_rng(1)
    kinds = Counter()
    for sc in scenes[:200]:
        for c in scene_captions(sc, rng, 5):
            neg = hard_negative(sc, c.claim, rng)
            assert neg is not None
            assert not claim_holds(sc, neg.claim), (c.text, neg.text)
            assert neg.claim.kind == c.claim.kind and _diff(c.claim, neg.claim) == 1
            kinds[(neg.claim.rel != c.claim.rel, neg.claim.n != c.claim.n)] += 1
    assert kinds[(True, False)] > 30  # relation changes happen
    assert kinds[(False, True)] > 30  # count changes happen


def test_hard_negative_by_hand():
    sc = render_scene([SceneObject("circle", "red", "small", 2, 20), SceneObject("square", "blue", "large", 36, 20)])
    c = Claim("relation", a=Desc("red", "circle"), b=Desc("blue", "square"), rel="left of")
    assert claim_holds(sc, c)
    neg = hard_negative(sc, c, np.random.default_rng(0), change="relation")
    assert neg.claim.rel in ("right of", "above", "below", "next to") and not claim_holds(sc, neg.claim)
    cnt = hard_negative(sc, Claim("count", a=Desc(shape="circle"), n=1), np.random.default_rng(0), change="count")
    assert cnt.claim.n == 2 and "two" in cnt.text


def test_render_plurals():
    rng = np.random.default_rng(0)
    t = capmod.render_claim(Claim("count", a=Desc(color="red", shape="cross"), n=3), rng)
    assert "three red crosses" in t or "three red plus signs" in t


# --- NLVR2 ---------------------------------------------------------------------------------------

def test_nlvr2_twice_as_many_by_hand():
    left = render_scene([SceneObject("circle", "red", "small", 2, 2), SceneObject("circle", "blue", "small", 40, 40)])
    right = render_scene([SceneObject("circle", "green", "small", 2, 2), SceneObject("star", "red", "small", 40, 40)])
    st = {s: t for _, s, t in nlvr2_statements(left, right)}
    assert st["the left image has twice as many circles as the right image"] is True
    assert st["the right image has twice as many circles as the left image"] is False
    assert st["both images contain a red object"] is True
    assert st["exactly one of the two images contains a star"] is True
    assert st["there are three circles in total"] is True


def test_nlvr2_balanced_and_round_trip(tmp_path, scenes):
    ex = make_nlvr2(scenes, 200, np.random.default_rng(0), split="dev")
    assert Counter(e.label for e in ex) == {True: 100, False: 100}
    from vlp_course.data.nlvr2 import statement_holds

    for a, b in zip(ex[0:50:2], ex[1:50:2]):  # labels agree with a fresh evaluation of the sentence on each pair
        assert statement_holds(a.sentence, scenes[a.left_id], scenes[a.right_id]) == a.label
        assert statement_holds(b.sentence, scenes[b.left_id], scenes[b.right_id]) == b.label
        assert {s: t for _, s, t in nlvr2_statements(scenes[a.left_id], scenes[a.right_id])}[a.sentence] == a.label
    with pytest.raises(ValueError, match="not a templated NLVR2 statement"):
        statement_holds("the left image is pretty", scenes[0], scenes[1])
    # NLVR2's design (Suhr et al. 2019, section 3): every sentence once true and once false, so the
    # sentence alone carries no information about the label
    by_sentence: dict[str, list[bool]] = {}
    for e in ex:
        by_sentence.setdefault(e.sentence, []).append(e.label)
    assert all(Counter(v)[True] == Counter(v)[False] for v in by_sentence.values())
    assert [e.sentence for e in ex[0::2]] == [e.sentence for e in ex[1::2]]
    assert [e.identifier for e in ex[:3]] == ["dev-0-0-0", "dev-0-1-0", "dev-1-0-0"]
    assert len({e.sentence.split()[1] for e in ex}) > 4  # several kinds of statement
    p = write_nlvr2(ex, tmp_path / "dev.json")
    back = load_nlvr2(p)
    assert back == ex
    rec = json.loads(p.read_text().splitlines()[0])
    assert rec["label"] in ("True", "False") and rec["identifier"] == "dev-0-0-0"
    assert back[0].left_image == "dev-0-0-img0.png" and back[0].right_image == "dev-0-0-img1.png"
    (tmp_path / "bad.json").write_text('{"identifier": "x-1-0-0", "sentence": "s", "label": "maybe"}\n')
    with pytest.raises(ValueError, match="True"):
        load_nlvr2(tmp_path / "bad.json")


# --- COCO files and the cached dataset -------------------------------------------------------------

def test_coco_files_round_trip_and_pycocotools(tmp_path, scenes):
    sizes = {i: (64, 64) for i in range(10)}
    boxes = {i: scenes[i].boxes() for i in range(10)}
    labels = {i: scenes[i].labels() for i in range(10)}
    p = write_coco_instances(tmp_path / "inst.json", boxes, labels, SHAPES, sizes)
    b2, ids, cats, _ = load_coco_instances(p)
    for i in range(10):
        np.testing.assert_allclose(b2[i], boxes[i])
        assert list(ids[i] - 1) == list(labels[i])
    raw = json.loads(p.read_text())["annotations"][0]["bbox"]
    x1, y1, x2, y2 = boxes[0][0]
    assert raw == [x1, y1, x2 - x1, y2 - y1]  # COCO stores xywh
    from pycocotools.coco import COCO

    coco = COCO(str(p))
    assert len(coco.getAnnIds(imgIds=[0])) == len(scenes[0].objects)
    cp = write_coco_captions(tmp_path / "cap.json", {0: ["a", "b"], 1: ["c"]}, sizes)
    caps, images = load_coco_captions(cp)
    assert caps[0] == ["a", "b"] and caps[1] == ["c"] and images[0]["width"] == 64
    raw = json.loads((tmp_path / "inst.json").read_text())
    raw["annotations"][0]["bbox"] = [60, 60, 10, 10]
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="inside the image"):
        load_coco_instances(tmp_path / "bad.json")


def test_cached_dataset_build_read_and_repair(tmp_path, monkeypatch):
    monkeypatch.setenv("VLP_COURSE_CACHE", str(tmp_path))
    ds = load_vl_scenes(40, seed=2)
    (folder,) = list(tmp_path.glob("scenes-*"))
    assert not list(folder.glob("*.tmp")) and (folder / "manifest.json").exists()
    ds2 = load_vl_scenes(40, seed=2)
    assert np.array_equal(ds.scenes.images, ds2.scenes.images)
    assert ds2.captions == ds.captions and ds2.negatives == ds.negatives
    assert [q.answers for q in ds2.questions] == [q.answers for q in ds.questions]
    assert ds2.nlvr2 == ds.nlvr2
    assert ds2.scenes.objects == ds.scenes.objects
    # a corrupted file fails its checksum and the entry is rebuilt
    (folder / "captions.json").write_text("{}")
    ds3 = load_vl_scenes(40, seed=2)
    assert ds3.captions == ds.captions
    assert json.loads((folder / "captions.json").read_text())["annotations"]
    mem = build_vl_scenes(40, seed=2)
    assert mem.captions == ds.captions
    pairs = ds.caption_pairs()
    assert {m for _, _, m in pairs} == {0, 1} and len(ds.captions[0]) == 5
