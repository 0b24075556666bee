"""The training loop and safetensors checkpoints: learning, bit-exact round trip, atomic writes,
key reports, interrupt keeps the best weights, precision only on CUDA, errors."""

from __future__ import annotations

import math
import os

import pytest
import torch
from safetensors import safe_open
from torch import nn

from vlp_course.checkpoints import load_checkpoint, load_optimizer_state, read_metadata, save_checkpoint
from vlp_course.training import History, TrainConfig, distributed_loader, train


def _regression(seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(128, 4, generator=g)
    y = X @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1
    return X, y


def _step(model, batch):
    x, y = batch
    loss = ((model(x).squeeze(-1) - y) ** 2).mean()
    return {"loss": loss, "mae": (model(x).squeeze(-1) - y).abs().mean()}


def test_train_learns_and_keeps_history_api():
    X, y = _regression()
    model = nn.Linear(4, 1)
    hist = train(model, [(X[i:i + 32], y[i:i + 32]) for i in range(0, 128, 32)], _step,
                 TrainConfig(steps=150, lr=0.05, progress=False, warmup_steps=5, decay="cosine"))
    assert isinstance(hist, History) and hist.steps == list(range(150))
    assert set(hist.train) == {"loss", "mae"} and len(hist.train["loss"]) == 150
    sm = hist.smoothed("loss", 10)
    assert sm[-1] < 0.01 * sm[0]
    assert not model.training and hist.precision == "fp32" and hist.world_size == 1


def test_seeded_runs_are_identical():
    X, y = _regression()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 1))
        train(m, lambda s: (X, y), _step, TrainConfig(steps=20, progress=False, seed=3))
        runs.append([p.detach().clone() for p in m.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs))


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(7, 5)
        self.dec = nn.Linear(5, 7, bias=False)
        self.dec.weight = self.emb.weight  # tied, like an MLM decoder
        self.p16 = nn.Parameter(torch.randn(3, dtype=torch.float16))
        self.bf = nn.Parameter(torch.randn(2, 2, dtype=torch.bfloat16))
        self.register_buffer("counts", torch.arange(4, dtype=torch.int64))

    def forward(self, ids):
        return self.dec(self.emb(ids)).sum() + self.p16.float().sum() + self.bf.float().sum()


def test_checkpoint_round_trip_bit_exact_with_tied_weights_and_optimizer(tmp_path):
    torch.manual_seed(0)
    a = Tied()
    opt = torch.optim.AdamW(a.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        a(torch.tensor([1, 2, 3])).backward()
        opt.step()
    path = save_checkpoint(a, tmp_path / "ck" / "model.safetensors", {"step": 3, "cfg": {"d": 5}}, optimizer=opt)
    assert path.exists() and os.listdir(path.parent) == ["model.safetensors"]  # no temp file left
    with safe_open(str(path), framework="pt") as f:  # a real safetensors file, no pickle
        assert "emb.weight" in f.keys() and "dec.weight" not in f.keys()  # tied weight stored once
    torch.manual_seed(1)
    b = Tied()
    res = load_checkpoint(b, path)
    assert res.missing == [] and res.unexpected == [] and res.metadata == {"step": 3, "cfg": {"d": 5}}
    for (k, v), (k2, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k == k2 and v.dtype == w.dtype and torch.equal(v, w), k
    assert b.dec.weight is b.emb.weight
    assert read_metadata(path)["step"] == 3
    opt_b = torch.optim.AdamW(b.parameters(), lr=0.1)
    load_optimizer_state(opt_b, path)
    sa, sb = opt.state_dict(), opt_b.state_dict()
    for pid in sa["state"]:
        for name, v in sa["state"][pid].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(sb["state"][pid][name]))


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    m = nn.Linear(3, 2)
    path = save_checkpoint(m, tmp_path / "m.safetensors", {"v": 1})
    before = path.read_bytes()
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_checkpoint(m, path, {"bad": object()})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with torch.no_grad():
        m.weight.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(m, path, {"v": 2})
    assert path.read_bytes() == before  # the old checkpoint is intact
    assert os.listdir(tmp_path) == ["m.safetensors"]  # and the temp file is gone


def test_load_reports_missing_unexpected_and_shape_errors(tmp_path):
    src = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    path = save_checkpoint(src, tmp_path / "s.safetensors")
    other = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2), nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"missing keys .*\[2\]: 2.bias, 2.weight"):
        load_checkpoint(other, path)
    res = load_checkpoint(other, path, strict=False)
    assert res.missing == ["2.bias", "2.weight"] and res.unexpected == []
    assert torch.equal(other[0].weight, src[0].weight)
    smaller = nn.Sequential(nn.Linear(3, 4))
    with pytest.raises(ValueError, match=r"unexpected keys .*1.bias, 1.weight"):
        load_checkpoint(smaller, path)
    wrong = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2))
    with pytest.raises(ValueError, match=r"0.weight: file \(4, 3\) vs model \(5, 3\)"):
        load_checkpoint(wrong, path, strict=False)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(src, tmp_path / "nope.safetensors")


def test_keyboard_interrupt_keeps_best_weights_and_saves_them(tmp_path):
    X, y = _regression()
    model = nn.Linear(4, 1)
    snapshots = {}
    scores = iter([1.0, 5.0, 2.0, 3.0, 0.5])  # best at the second evaluation (step 10)

    def eval_fn(m):
        snapshots[len(snapshots) * 5 + 5] = {k: v.clone() for k, v in m.state_dict().items()}
        return {"acc": next(scores)}

    def step_fn(m, batch):
        if step_fn.n == 23:
            raise KeyboardInterrupt
        step_fn.n += 1
        return _step(m, batch)

    step_fn.n = 0
    ck = tmp_path / "best.safetensors"
    hist = train(model, lambda s: (X, y), step_fn,
                 TrainConfig(steps=100, lr=0.05, eval_every=5, progress=False, checkpoint_path=str(ck)), eval_fn=eval_fn)
    assert hist.interrupted and len(hist.steps) == 23 and hist.best_step == 10 and hist.best_value == 5.0
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshots[10][k])
    fresh = nn.Linear(4, 1)
    assert load_checkpoint(fresh, ck).metadata["best_step"] == 10
    assert all(torch.equal(v, snapshots[10][k]) for k, v in fresh.state_dict().items())


def test_interrupt_without_eval_saves_last_weights(tmp_path):
    X, y = _regression()
    model = nn.Linear(4, 1)

    def step_fn(m, batch):
        if step_fn.n == 7:
            step_fn.weights = {k: v.clone() for k, v in m.state_dict().items()}
            raise KeyboardInterrupt
        step_fn.n += 1
        return _step(m, batch)

    step_fn.n = 0
    ck = tmp_path / "last.safetensors"
    hist = train(model, lambda s: (X, y), step_fn, TrainConfig(steps=50, progress=False, checkpoint_path=str(ck)))
    assert hist.interrupted and read_metadata(ck)["reason"] == "interrupted"
    fresh = nn.Linear(4, 1)
    load_checkpoint(fresh, ck)
    assert all(torch.equal(v, step_fn.weights[k]) for k, v in fresh.state_dict().items())


def test_mixed_precision_only_on_cuda():
    X, y = _regression()
    for prec in ("auto", "bf16", "fp16"):
        hist = train(nn.Linear(4, 1), lambda s: (X, y), _step, TrainConfig(steps=2, progress=False, precision=prec), device="cpu")
        assert hist.precision == "fp32"


def test_distributed_loader_single_process_is_seeded_and_reshuffles_each_epoch():
    data = torch.utils.data.TensorDataset(torch.arange(12))
    a = [b[0].tolist() for b in distributed_loader(data, 4, seed=3)]
    b = [b[0].tolist() for b in distributed_loader(data, 4, seed=3)]
    assert a == b and sorted(sum(a, [])) == list(range(12))
    seen = []
    train(nn.Linear(1, 1), distributed_loader(data, 4, seed=3),
          lambda m, batch: seen.append(batch[0].tolist()) or {"loss": m(batch[0].float()[:, None]).mean()},
          TrainConfig(steps=6, progress=False))
    assert seen[:3] == a and sorted(sum(seen[3:], [])) == list(range(12))


def test_errors():
    with pytest.raises(ValueError, match="precision must be"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match="grad_clip must be positive"):
        TrainConfig(grad_clip=0)
    with pytest.raises(ValueError, match="'loss' entry"):
        train(nn.Linear(1, 1), lambda s: torch.ones(2, 1), lambda m, b: {"l": m(b).sum()}, TrainConfig(steps=1, progress=False))
    with pytest.raises(ValueError, match="must be a scalar"):
        train(nn.Linear(1, 1), lambda s: torch.ones(2, 1), lambda m, b: {"loss": m(b)}, TrainConfig(steps=1, progress=False))


@pytest.mark.parametrize("prec,dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_mixed_precision_path_trains_a_vl_model_with_finite_losses(monkeypatch, prec, dtype):
    """The CUDA mixed-precision path (autocast, and a GradScaler for fp16), run on the CPU's autocast:
    the matrix products of a VisualBERT pretraining step run in ``dtype``, padded rows stay finite,
    and the loss falls. (CI has no GPU; the loop takes its autocast device from the model's device.)"""
    import vlp_course.training as training
    from vlp_course.models.visualbert import VisualBertConfig, VisualBertForPreTraining

    if dtype is torch.float16 and tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 6):
        pytest.skip("the CPU's fp16 autocast needs torch >= 2.6")

    monkeypatch.setattr(training, "_amp_dtype", lambda cfg, device: dtype)
    torch.manual_seed(0)
    cfg = VisualBertConfig(vocab_size=30, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, visual_embedding_dim=6, max_position_embeddings=16,
                           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = VisualBertForPreTraining(cfg)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 30, (16, 8), generator=g)
    mask = torch.ones(16, 8, dtype=torch.long)
    mask[::2, 5:] = 0  # padded text
    vmask = torch.ones(16, 3, dtype=torch.long)
    vmask[1::2, 1:] = 0  # padded regions: rows with one real region
    feats = torch.randn(16, 3, 6, generator=g)
    labels = torch.where(mask.bool(), ids, torch.full_like(ids, -100))  # reconstruct every real token
    seen = []
    model.visual_bert.encoder.layer[0].attention.self.query.register_forward_hook(lambda m, i, o: seen.append(o.dtype))

    def step(m, batch):
        out = m(ids, feats, mask, vmask, mlm_labels=labels, mlm_scores="masked")
        # every row, padded text and padded regions included, and the scores stay finite
        assert torch.isfinite(out.encoder.last_hidden_state).all() and torch.isfinite(out.logits["mlm"]).all()
        return {"loss": out.loss}

    hist = training.train(model, lambda s: {}, step, TrainConfig(steps=40, lr=3e-3, progress=False, precision=prec))
    assert set(seen) == {dtype}, seen  # the products ran in the low precision
    losses = hist.train["loss"]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.7 * losses[0], (losses[0], losses[-1])


# --- refusing bad settings and stopping on divergence -------------------------------------------

@pytest.mark.parametrize("kw, msg", [
    (dict(lr=math.inf), "lr must be finite"), (dict(lr=math.nan), "lr must be finite"), (dict(lr=0.0), "lr must be finite and > 0"),
    (dict(lr="1e-3"), "lr must be a number"), (dict(weight_decay=-0.1), "weight_decay must be >= 0"),
    (dict(momentum=1.0), r"momentum must be in \[0, 1\)"), (dict(steps=2.5), "steps must be an integer"),
    (dict(eval_every=-1), "eval_every must be >= 0"), (dict(grad_clip=math.inf), "grad_clip must be finite"),
    (dict(warmup_steps=-2), "warmup_steps must be >= 0"), (dict(eval_metric=3), "eval_metric must be"),
])
def test_config_is_checked_up_front(kw, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(**kw)


def _counting_step(calls):
    def step(model, batch):
        calls.append(1)
        return _step(model, batch)
    return step


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_weights():
    X, y = _regression()
    bad = X.clone()
    bad[0, 0] = math.nan  # a batch with a NaN feature at step 3
    batches = lambda s: (bad if s == 3 else X, y)  # noqa: E731
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    with pytest.raises(FloatingPointError, match=r"step 3: the loss is nan .*last finite loss was at step 2") as err:
        train(model, batches, _step, TrainConfig(steps=10, lr=0.05, progress=False))
    assert err.value.history.steps == [0, 1, 2]  # what was logged before the stop
    torch.manual_seed(0)
    reference = nn.Linear(4, 1)
    train(reference, batches, _step, TrainConfig(steps=3, lr=0.05, progress=False))
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.isfinite(a).all() and torch.equal(a, b)  # exactly the weights after steps 0, 1, 2


def test_non_finite_gradient_norm_stops_before_the_update():
    model = nn.Linear(2, 1)
    start = [p.detach().clone() for p in model.parameters()]

    def step(m, batch):  # finite loss (0), infinite slope: d sqrt(u) / du at u = 0
        return {"loss": (m.weight * 0).abs().sqrt().sum() + 0 * m.bias.sum()}

    with pytest.raises(FloatingPointError, match=r"step 0: the gradient norm is (nan|inf)"):
        train(model, lambda s: None, step, TrainConfig(steps=5, lr=0.1, progress=False, grad_clip=None))
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), start))


def test_an_update_that_overflows_the_weights_is_undone():
    """A finite but absurd lr: step 0's update sends the weights to inf (fp32 max is 3.4e38); step 1's
    loss is then not finite, and the weights of step 0 are put back."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)

    def step(m, batch):
        return {"loss": m(torch.full((1, 1), 1e10)).sum()}  # gradient 1e10

    with pytest.raises(FloatingPointError, match=r"step 1: the loss is -?inf .*weights of step 0 .*were put back"):
        train(model, lambda s: None, step, TrainConfig(steps=5, lr=1e30, optimizer="sgd", momentum=0.0, grad_clip=None,
                                                       progress=False))
    assert model.weight.item() == 1.0


def test_eval_metric_is_checked_against_the_first_evaluation():
    X, y = _regression()
    calls = []
    with pytest.raises(ValueError, match=r"eval_metric 'acc' is not among eval_fn's results \['mae', 'mse'\]"):
        train(nn.Linear(4, 1), lambda s: (X, y), _counting_step(calls),
              TrainConfig(steps=10, eval_every=2, eval_metric="acc", progress=False),
              eval_fn=lambda m: {"mse": 1.0, "mae": 0.5})
    assert len(calls) == 2  # the first evaluation comes after step 2
    with pytest.raises(ValueError, match="needs an eval_fn"):
        train(nn.Linear(4, 1), lambda s: (X, y), _counting_step(calls), TrainConfig(steps=3, eval_metric="mse", progress=False))
    assert len(calls) == 2


def test_checkpoint_folder_is_checked_before_the_first_step(tmp_path):
    X, y = _regression()
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the folder should be")
    calls = []
    with pytest.raises(ValueError, match=r"checkpoint_path's folder .*not_a_folder.* is not writable"):
        train(nn.Linear(4, 1), lambda s: (X, y), _counting_step(calls),
              TrainConfig(steps=3, progress=False, checkpoint_path=str(blocker / "ck.safetensors")))
    with pytest.raises(ValueError, match="is a folder; give a file name"):
        train(nn.Linear(4, 1), lambda s: (X, y), _counting_step(calls), TrainConfig(steps=3, progress=False, checkpoint_path=str(tmp_path)))
    assert calls == []  # no step ran
    ok = tmp_path / "new" / "deeper" / "ck.safetensors"  # a folder that does not exist yet is created
    train(nn.Linear(4, 1), lambda s: (X, y), _counting_step(calls), TrainConfig(steps=2, progress=False, checkpoint_path=str(ok)))
    assert ok.is_file() and len(calls) == 2 and [p.name for p in ok.parent.iterdir()] == ["ck.safetensors"]


def test_adamw_steps_match_the_per_tensor_reference():
    """The loop uses the fused AdamW kernel (a fifth of a small model's CPU step was the default
    per-tensor loop); its weights must follow the reference implementation, warm-up and decay included."""
    X, y = _regression()
    torch.manual_seed(0)
    ours = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 1))
    ref = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 1))
    ref.load_state_dict(ours.state_dict())
    cfg = TrainConfig(steps=30, lr=0.02, weight_decay=0.01, warmup_steps=5, decay="linear", grad_clip=None, progress=False)
    train(ours, lambda s: (X, y), _step, cfg)
    opt = torch.optim.AdamW(ref.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / 5 if s < 5 else max(0.0, 1 - (s - 5) / 25))
    for _ in range(cfg.steps):
        _step(ref, (X, y))["loss"].backward()
        opt.step(); sched.step(); opt.zero_grad()
    moved = max(float((a - b).detach().abs().max()) for a, b in zip(ours.parameters(), ref.parameters()))
    assert moved < 1e-5, moved
