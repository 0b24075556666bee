"""Text-to-image: the patch tokenizer, MaskGIT's masking and decoding (google-research/maskgit at 1db2359),
the model, the course's eyes (the scene reader) and the shipped generator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vlp_course.models.text_to_image import (IGNORE_INDEX, MaskGIT, TextToImageConfig, decoding_step, generate,
                                             mask_image_tokens, mask_schedule, tokens_to_mask)
from vlp_course.vision.image_tokens import PatchTokenizer, from_patches, to_patches


# ---- the tokenizer -------------------------------------------------------------------------------
def test_patches_round_trip_exactly_and_in_row_major_order():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    p = to_patches(images, 4)
    assert p.shape == (3, 4, 48)
    # token 1 is the patch of rows 0..3 and columns 4..7
    np.testing.assert_allclose(p[0, 1], images[0, 0:4, 4:8].reshape(-1) / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_allclose(p[2, 2], images[2, 4:8, 0:4].reshape(-1) / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(from_patches(p, 4), images)


def test_tokenizer_by_hand_two_codes():
    black, white = np.zeros(48, np.float32), np.ones(48, np.float32)
    tok = PatchTokenizer(torch.tensor(np.stack([black, white])), patch=4, image_size=8)
    img = np.zeros((1, 8, 8, 3), np.uint8)
    img[0, 0:4, 4:8] = 200  # top right: nearer white
    img[0, 4:8, 0:4] = 100  # bottom left: nearer black (100/255 < 0.5)
    assert tok.encode(img).tolist() == [[0, 1, 0, 0]]
    again = tok.decode(torch.tensor([[0, 1, 0, 0]]))
    assert again[0, 0, 5].tolist() == [255, 255, 255] and again[0, 5, 0].tolist() == [0, 0, 0]
    assert (tok.num_codes, tok.grid, tok.num_tokens) == (2, 2, 4)


def test_tokenizer_fit_reconstructs_images_made_of_its_own_patches():
    rng = np.random.default_rng(1)
    palette = rng.integers(0, 256, size=(6, 3), dtype=np.uint8)
    grid = rng.integers(0, 6, size=(20, 4, 4))  # 20 images of 4 x 4 flat-coloured 4-pixel patches
    images = np.repeat(np.repeat(palette[grid], 4, axis=1), 4, axis=2)  # (20, 16, 16, 3)
    tok = PatchTokenizer.fit(images, codes=6, patch=4, seed=0)
    np.testing.assert_array_equal(tok.decode(tok.encode(images)), images)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 8, 8, 3), np.float32), "uint8"),
    (np.zeros((2, 8, 8), np.uint8), r"\(N, S, S, 3\)"),
    (np.zeros((2, 10, 10, 3), np.uint8), "multiple of the patch"),
    (np.zeros((2, 16, 16, 3), np.uint8), "must be 8 x 8"),
])
def test_tokenizer_refuses_bad_images(bad, match):
    tok = PatchTokenizer(torch.rand(3, 48), patch=4, image_size=8)
    with pytest.raises(ValueError, match=match):
        tok.encode(bad)


@pytest.mark.parametrize("codes, match", [(torch.tensor([[0, 1, 2, 3]]), r"\[0, 3\)"), (torch.zeros(1, 4), "integers"),
                                          (torch.zeros(1, 5, dtype=torch.long), r"\(N, 4\)")])
def test_tokenizer_refuses_bad_codes(codes, match):
    tok = PatchTokenizer(torch.rand(3, 48), patch=4, image_size=8)
    with pytest.raises(ValueError, match=match):
        tok.decode(codes)


# ---- masking and its schedule -------------------------------------------------------------------
def test_mask_schedule_is_maskgits_cosine():
    assert float(mask_schedule(0.0)) == 1.0
    assert float(mask_schedule(1.0)) == pytest.approx(1e-6)  # clipped, as libml/mask_schedule.py
    assert float(mask_schedule(0.5)) == pytest.approx(math.cos(math.pi / 4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mask_schedule(1.5)


def test_tokens_to_mask_by_hand():
    # floor(256 cos(pi/2 (t+1)/8)): 256 * 0.98079 = 251.08, * 0.92388 = 236.51, * 0.83147 = 212.86, * 0.70711 = 181.02,
    # * 0.55557 = 142.23, * 0.38268 = 97.97, * 0.19509 = 49.94, * 1e-6 = 0.0003
    assert [tokens_to_mask(256, t, 8) for t in range(8)] == [251, 236, 212, 181, 142, 97, 49, 0]
    with pytest.raises(ValueError, match="step"):
        tokens_to_mask(256, 8, 8)


def test_mask_image_tokens_hides_ceil_cos_share_and_labels_only_there():
    codes = torch.randint(0, 10, (4000, 64), generator=torch.Generator().manual_seed(0))
    tokens, labels = mask_image_tokens(codes, 10, generator=torch.Generator().manual_seed(1))
    hidden = tokens == 10
    assert torch.equal(labels[hidden], codes[hidden]) and (labels[~hidden] == IGNORE_INDEX).all()
    assert torch.equal(tokens[~hidden], codes[~hidden])
    assert hidden.sum(1).min() >= 1
    # E[cos(pi/2 r)] = 2/pi = 0.6366, the ceiling adds at most 1/64; the standard error over 4,000 rows is 0.005
    share = hidden.float().mean().item()
    assert 2 / math.pi - 0.02 < share < 2 / math.pi + 1 / 64 + 0.02


def test_mask_image_tokens_refuses_bad_codes():
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        mask_image_tokens(torch.tensor([[0, 10]]), 10)
    with pytest.raises(ValueError, match="integer"):
        mask_image_tokens(torch.zeros(2, 3), 10)


# ---- one decoding step, against a plain rewrite of parallel_decode.py ---------------------------
def _reference_remask(tokens, logits, sampled, step, iterations, unknown_at_start, mask_id, temperature, u_gumbel):
    """parallel_decode.decode's loop body after the sampling, in numpy, one row at a time."""
    out = []
    for b in range(tokens.shape[0]):
        cur, smp = tokens[b].numpy(), sampled[b].numpy()
        p = torch.softmax(logits[b].double(), -1).numpy()
        unknown = cur == mask_id
        ratio = (step + 1) / iterations
        mask_len = math.floor(unknown_at_start[b] * max(math.cos(math.pi / 2 * ratio), 1e-6))
        mask_len = max(1, min(int(unknown.sum()) - 1, mask_len))
        sel = np.where(unknown, p[np.arange(len(cur)), smp], np.inf)
        conf = np.log(sel) + temperature * (1 - ratio) * -np.log(-np.log(u_gumbel[b]))
        cut = np.sort(conf)[mask_len]
        out.append(np.where(conf < cut, mask_id, smp))
    return np.stack(out)


@pytest.mark.parametrize("step, temperature", [(0, 4.5), (3, 4.5), (6, 0.0), (7, 1.0)])
def test_decoding_step_matches_the_original(step, temperature):
    """The sample comes from softmax(logits) at unknown positions and keeps the known ones; the re-masking equals a
    plain rewrite of the original's (the Gumbel draws made equal by reading them from the same generator)."""
    g = torch.Generator().manual_seed(step)
    B, G, K = 3, 16, 5
    tokens = torch.randint(0, K, (B, G), generator=g)
    tokens[torch.rand(B, G, generator=g) < 0.7] = K  # most unknown
    tokens[:, 0] = K
    logits = torch.randn(B, G, K, generator=g) * 2
    start = torch.full((B,), G)
    sampled, nxt = decoding_step(tokens, logits, step, 8, start, mask_id=K, choice_temperature=temperature,
                                 generator=torch.Generator().manual_seed(5))
    known = tokens != K
    assert torch.equal(sampled[known], tokens[known]) and (sampled < K).all()
    gg = torch.Generator().manual_seed(5)
    draws = torch.multinomial(torch.softmax(logits.reshape(-1, K), -1), 1, generator=gg).reshape(B, G)
    assert torch.equal(sampled[~known], draws[~known])
    u = torch.rand(B, G, generator=gg).clamp(1e-20, 1 - 1e-7).numpy()
    ref = _reference_remask(tokens, logits, sampled, step, 8, start.numpy(), K, temperature, u)
    assert np.array_equal(nxt.numpy(), ref)


def test_decoding_step_keeps_known_tokens_and_masks_the_scheduled_number():
    g = torch.Generator().manual_seed(0)
    B, G, K = 2, 64, 7
    tokens = torch.full((B, G), K)
    start = torch.full((B,), G)
    for t in range(8):
        before = tokens.clone()
        logits = torch.randn(B, G, K, generator=g)
        sampled, tokens = decoding_step(tokens, logits, t, 8, start, mask_id=K, generator=g)
        known = before != K
        assert torch.equal(sampled[known], before[known]) and torch.equal(tokens[known], before[known])
        assert (sampled < K).all()
        expected = max(1, min(int((before == K).sum(1)[0]) - 1, tokens_to_mask(G, t, 8)))
        assert (tokens == K).sum(1).tolist() == [expected] * B


def test_decoding_with_temperature_zero_remasks_the_least_likely():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(1, 10, 4, generator=g) * 2  # no probability rounds to 1: no ties
    tokens = torch.full((1, 10), 4)
    sampled, nxt = decoding_step(tokens, logits, 3, 8, torch.tensor([10]), mask_id=4, choice_temperature=0.0, generator=g)
    p = logits.softmax(-1)[0].gather(1, sampled[0][:, None]).squeeze(1)  # the probability of each sampled code
    n = tokens_to_mask(10, 3, 8)  # floor(10 cos(pi/4)) = 7
    assert n == 7 and set(torch.nonzero(nxt[0] == 4).flatten().tolist()) == set(p.argsort()[:n].tolist())


# ---- the model -----------------------------------------------------------------------------------
def _tiny(**kw):
    torch.manual_seed(0)
    cfg = TextToImageConfig(hidden_size=16, num_attention_heads=2, num_hidden_layers=2, intermediate_size=32,
                            num_words=9, num_codes=6, num_image_tokens=4, max_text_length=5, **kw)
    return MaskGIT(cfg).eval()


def test_config_layout_and_tied_head():
    m = _tiny()
    cfg = m.config
    assert cfg.vocab_size == 6 + 9 + 1 and cfg.mask_token_id == 15 and cfg.max_position_embeddings == 9
    assert m.predictions.decoder.weight is m.embeddings.word_embeddings.weight


def test_model_reads_the_caption_but_not_its_padding_and_loss_is_label_smoothed_ce():
    m = _tiny()
    ids = torch.tensor([[1, 2, 3, 0, 0], [1, 4, 3, 0, 0]])
    keep = (ids != 0).long()
    img = torch.tensor([[6, 2, 6, 1], [6, 2, 6, 1]])  # 6 = [MASK]
    logits, _ = m(ids, keep, img)
    assert logits.shape == (2, 4, 6)
    assert (logits[0] - logits[1]).abs().max() > 1e-6, "the caption matters"
    padded = ids.clone()
    padded[:, 3:] = 7
    assert torch.allclose(m(padded, keep, img)[0], logits, atol=1e-6), "padding is keyed out"
    labels = torch.tensor([[3, IGNORE_INDEX, 0, IGNORE_INDEX], [5, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]])
    _, loss = m(ids, keep, img, labels)
    rows = logits[labels != IGNORE_INDEX]
    target = labels[labels != IGNORE_INDEX]
    logp = rows.log_softmax(-1)
    by_hand = (0.9 * -logp.gather(1, target[:, None]).squeeze(1) + 0.1 * -logp.mean(1)).mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)


@pytest.mark.parametrize("kw, match", [
    (dict(image_tokens=torch.tensor([[7, 0, 0, 0]])), "image_tokens"),
    (dict(input_ids=torch.tensor([[1, 9, 3, 0, 0]])), "input_ids"),
    (dict(input_ids=torch.ones(1, 6, dtype=torch.long), attention_mask=torch.ones(1, 6)), "at most 5"),
    (dict(attention_mask=torch.ones(1, 4)), "attention_mask"),
    (dict(image_tokens=torch.zeros(1, 4)), "integer"),
])
def test_model_refuses_bad_input(kw, match):
    m = _tiny()
    args = dict(input_ids=torch.tensor([[1, 2, 3, 0, 0]]), attention_mask=torch.tensor([[1, 1, 1, 0, 0]]),
                image_tokens=torch.tensor([[6, 6, 6, 6]]))
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        m(**args)


def test_generate_fills_every_token_and_follows_the_schedule():
    m = _tiny()
    ids = torch.tensor([[1, 2, 3, 0, 0]] * 3)
    codes, steps = generate(m, ids, (ids != 0).long(), iterations=3, generator=torch.Generator().manual_seed(0),
                            return_steps=True)
    assert codes.shape == (3, 4) and (codes < 6).all() and (codes >= 0).all()
    assert [int((s == 6).sum(1)[0]) for s in steps] == [4, 3, 2]  # 4, floor(4 cos(pi/6)) = 3, floor(4 cos(pi/3)) = 2
    with pytest.raises(ValueError, match="iterations"):
        generate(m, ids, (ids != 0).long(), iterations=0)


# ---- the course's eyes ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def detector():
    from vlp_course.data.detector import load_detector

    return load_detector()


def test_read_scene_finds_drawn_objects(detector):
    from vlp_course.data.scene_reader import read_scene
    from vlp_course.data.scenes import SceneObject, render_scene

    scene = render_scene([SceneObject("circle", "red", "large", 4, 6), SceneObject("square", "blue", "small", 40, 40)])
    read = read_scene(scene.image, detector)
    got = sorted((o.shape, o.color, o.size) for o in read.objects)
    assert got == [("circle", "red", "large"), ("square", "blue", "small")]
    assert read_scene(np.full((64, 64, 3), 28, np.uint8), detector).objects == []  # the background alone


def test_read_scene_refuses_bad_images(detector):
    from vlp_course.data.scene_reader import read_scene

    with pytest.raises(ValueError, match="uint8"):
        read_scene(np.zeros((64, 64, 3), np.float32), detector)
    with pytest.raises(ValueError, match=r"\(S, S, 3\)"):
        read_scene(np.zeros((64, 64), np.uint8), detector)


def test_captions_seen_true_on_real_scenes(detector):
    """The reader's ceiling and its control on 150 held-out real scenes (95.0% / 2.0% on 200 in the benchmark)."""
    from vlp_course.data.scene_reader import captions_seen_true
    from vlp_course.recipes.base import Recipe, scene_tensors

    st = scene_tensors(Recipe(kind="visualbert"))
    idx = list(range(st.n_train, st.n_train + 150))
    own, other = captions_seen_true(st.ds.scenes.images[idx], [st.ds.captions[i][0] for i in idx], detector)
    assert own >= 0.88 and other <= 0.08
    with pytest.raises(ValueError, match="captions"):
        captions_seen_true(st.ds.scenes.images[idx], ["a red circle"], detector)


# ---- the recipe ----------------------------------------------------------------------------------
def test_encode_captions_and_bag_of_words_refuse_unknown_words():
    from vlp_course.recipes.base import Recipe, scene_tensors
    from vlp_course.recipes.text_to_image import bag_of_words, encode_captions

    vocab = scene_tensors(Recipe(kind="visualbert")).vocab
    ids, keep = encode_captions(vocab, ["a red circle"], 8)
    assert [vocab.itos[i] for i in ids[0, :5]] == ["[CLS]", "a", "red", "circle", "[SEP]"] and keep[0].tolist() == [1] * 5 + [0] * 3
    with pytest.raises(ValueError, match="zebra"):
        encode_captions(vocab, ["a red zebra"])
    with pytest.raises(ValueError, match="at most 2"):
        encode_captions(vocab, ["a red circle"], 4)
    bow = bag_of_words(vocab, ["a red red circle"])
    assert bow.sum() == 3 and bow[0, vocab.stoi["red"]] == 1
    with pytest.raises(ValueError, match="zebra"):
        bag_of_words(vocab, ["a zebra"])


# ---- the GAN baseline ----------------------------------------------------------------------------
def test_caption_gan_shapes_training_and_bad_input():
    from vlp_course.vision.gan import CaptionGAN, CaptionGenerator, train_caption_gan

    torch.manual_seed(0)
    gan = CaptionGAN(num_words=5, z_dim=8, cond=4, width=4, side=16)
    caps = torch.eye(5)[:4]
    x = gan.sample(caps, seed=0)
    assert x.shape == (4, 3, 16, 16) and x.abs().max() <= 1
    assert torch.equal(x, gan.sample(caps, seed=0)), "seeded"
    assert gan.D(x, caps).shape == (4,)
    real = torch.rand(3, 3, 16, 16) * 2 - 1
    before = [p.clone() for p in gan.G.parameters()]
    hist = train_caption_gan(gan, real, caps, torch.tensor([0, 1, 2, 0]), steps=3, batch_size=4)
    assert len(hist.train["loss"]) == 3 and all(np.isfinite(hist.train["d_loss"]))
    assert any(not torch.equal(a, b) for a, b in zip(before, gan.G.parameters()))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        train_caption_gan(gan, real * 3, caps, torch.tensor([0, 1, 2, 0]), steps=1)
    with pytest.raises(ValueError, match="image_of"):
        train_caption_gan(gan, real, caps, torch.tensor([0, 1, 3, 0]), steps=1)
    with pytest.raises(ValueError, match=r"\(B, 5\)"):
        gan.G(torch.ones(2, 6), torch.zeros(2, 8))
    with pytest.raises(ValueError, match="power of 2"):
        CaptionGenerator(5, side=48)


def test_grid_positions_replace_the_image_tokens_sequence_positions():
    """Ours: row + column embeddings for the image tokens; MaskGIT's one position per token is kept as "sequence"."""
    ids = torch.tensor([[1, 2, 3, 0, 0]])
    keep = (ids != 0).long()
    img = torch.tensor([[6, 2, 6, 1]])
    for positions, moves in (("grid", False), ("sequence", True)):
        m = _tiny(image_positions=positions)
        before, _ = m(ids, keep, img)
        with torch.no_grad():
            m.embeddings.position_embeddings.weight[5:] += torch.randn(4, 16)  # the rows image tokens use in a sequence
        after, _ = m(ids, keep, img)
        assert ((after - before).abs().max() > 1e-6) == moves, positions
    m = _tiny()
    assert m.row_embeddings.weight.shape == (2, 16) and m.column_embeddings.weight.shape == (2, 16)
    with pytest.raises(ValueError, match="square"):
        TextToImageConfig(num_image_tokens=8)


def test_guidance_combines_the_captioned_and_the_empty_scores(monkeypatch):
    """Muse's classifier-free guidance: (1 + w) · cond - w · uncond, uncond from the [CLS] [SEP] caption."""
    import vlp_course.models.text_to_image as t2i

    m = _tiny()
    ids = torch.tensor([[1, 2, 3, 0, 0]])
    keep = (ids != 0).long()
    empty = (torch.tensor([[1, 3, 0, 0, 0]]), torch.tensor([[1, 1, 0, 0, 0]]))
    seen = []
    real_step = t2i.decoding_step
    monkeypatch.setattr(t2i, "decoding_step", lambda tokens, logits, *a, **k: (seen.append(logits), real_step(tokens, logits, *a, **k))[1])
    t2i.generate(m, ids, keep, iterations=1, guidance_scale=2.0, empty_caption=empty)
    start = torch.full((1, 4), 6)
    cond, uncond = m(ids, keep, start)[0], m(*empty, start)[0]
    assert torch.allclose(seen[0], 3 * cond - 2 * uncond, atol=1e-6)
    with pytest.raises(ValueError, match="empty_caption"):
        t2i.generate(m, ids, keep, guidance_scale=1.0)


# ---- the shipped generator and GAN -----------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped():
    from vlp_course.recipes.text_to_image import load_text_to_image

    return load_text_to_image()


def test_shipped_generator_file_is_small_checked_and_trained(shipped):
    import json

    from vlp_course import files
    from vlp_course.recipes.text_to_image import CAPTION_GAN_FILE, TEXT_TO_IMAGE_FILE, TextToImageRecipe

    for name in (TEXT_TO_IMAGE_FILE, CAPTION_GAN_FILE):
        path = files.shipped_dir() / name
        assert path.stat().st_size <= 5 * 2**20
        assert files.expected_sha256(name) == files.sha256_file(path)
    model, data, meta = shipped
    curve = json.loads(meta["history"])
    assert curve["loss"][-1] < 0.4 * curve["loss"][0]  # the masked-token loss fell
    recipe = TextToImageRecipe(**json.loads(meta["text_to_image_recipe"]))
    assert recipe == TextToImageRecipe() and recipe.steps == len(curve["step"]) * 50  # the defaults reproduce it
    assert data.tokenizer.num_codes == recipe.codes and data.codes.shape == (len(data.images), 256)


def test_shipped_generator_draws_the_colours_and_some_whole_captions(shipped, detector):
    """Notebook 18's claims on its 100 held-out captions (caption i mod 5 of image i), guidance 2: the colours a
    caption names are drawn (83%, control 8%); the whole caption is true of some drawings (20%, control 9%; the
    target of 70% is missed: shapes are not learned)."""
    from vlp_course.data.scene_reader import colours_seen, read_scene
    from vlp_course.data.captions import caption_is_true
    from vlp_course.recipes.text_to_image import draw

    model, data, _ = shipped
    test = data.held_out(100)
    caps = [data.captions[i][i % 5] for i in test]
    read = [read_scene(im, detector) for im in draw(model, data, caps, seed=0, guidance_scale=2.0)]
    own = np.mean([caption_is_true(s, c) is True for s, c in zip(read, caps)])
    other = np.mean([caption_is_true(s, c) is True for s, c in zip(read, caps[1:] + caps[:1])])
    colours, colours_other = colours_seen(read, caps)
    assert colours >= 0.6 and colours - colours_other >= 0.5, (colours, colours_other)
    assert own >= 0.12 and own - other >= 0.04, (own, other)


def test_colours_seen_by_hand():
    from vlp_course.data.scene_reader import colours_seen
    from vlp_course.data.scenes import SceneObject, render_scene

    a = render_scene([SceneObject("circle", "red", "large", 4, 6), SceneObject("square", "blue", "small", 40, 40)])
    b = render_scene([SceneObject("star", "green", "large", 4, 6)])
    caps = ["a red circle and a blue square", "a green star", "a triangle"]  # the last names no colour: left out
    assert colours_seen([a, b, b], caps) == (1.0, 0.0)
    with pytest.raises(ValueError, match="names a colour"):
        colours_seen([a, b], ["a circle", "a star"])


def test_shipped_gan_loads_and_draws(shipped):
    from vlp_course.recipes.text_to_image import draw_with_gan, load_caption_gan

    gan, meta = load_caption_gan()
    _, data, _ = shipped
    imgs = draw_with_gan(gan, data, ["a red circle", "two blue squares"], seed=0)
    assert imgs.shape == (2, 64, 64, 3) and imgs.dtype == np.uint8
    assert np.array_equal(imgs, draw_with_gan(gan, data, ["a red circle", "two blue squares"], seed=0))
    with pytest.raises(ValueError, match="zebra"):
        draw_with_gan(gan, data, ["a zebra"])
