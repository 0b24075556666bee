"""Running a recipe: pretraining, VQA fine-tuning and evaluation, all on :func:`vlp_course.training.train`.

Every function takes a model and its :class:`~vlp_course.recipes.base.SceneAdapter` and returns
results (a :class:`~vlp_course.training.History`, a dict of numbers) rather than printing them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from vlp_course.recipes.base import SceneAdapter
from vlp_course.text.vocab import CLS, SEP, tokenize
from vlp_course.training import History, TrainConfig, train

__all__ = ["transfer_pretrained", "step_scalars", "pretrain", "finetune_vqa", "evaluate_pretraining", "evaluate_vqa",
           "vqa_predictions", "accuracy_by_answer_type", "answer_types", "vqa_against_question_only", "finetune_from",
           "pretrained_against_scratch", "colour_word_grounding", "finetune_nlvr2", "nlvr2_predictions",
           "evaluate_nlvr2", "nlvr2_against_statement_only", "finetune_nlvr2_from",
           "training_throughput"]


def transfer_pretrained(qa_model: nn.Module, pretrained: nn.Module) -> dict[str, list[str]]:
    """Copy the pretrained encoder into a VQA model (same parameter names); the new answer head keeps
    its initialisation. A model whose original maps pretrained weights to other names lists the
    mappings in ``pretrained_prefix_changes`` (``(pretrained prefix, prefix in the VQA model)`` pairs;
    VL-BERT's answer transform starts from its MLM transform).

    A task whose vocabulary is the pretrained one with words appended (the NLVR2 statements',
    :class:`~vlp_course.data.vl_tensors.PairTensors`) gets the pretrained rows of every
    vocabulary-indexed tensor; the appended words' rows keep their initialisation.

    Returns:
        ``{"loaded": [...], "new": [...], "dropped": [...], "grown": [...]}``: the task model's keys that were
        copied and those that keep their initialisation, the pretrained keys that were not used, and the
        copied keys that have more vocabulary rows here.

    Raises:
        ValueError: if a key copied has a different shape in the two models.
    """
    own, src = qa_model.state_dict(), pretrained.state_dict()
    source: dict[str, str] = {k: k for k in own if k in src}  # key here -> pretrained key
    for old, new in getattr(qa_model, "pretrained_prefix_changes", ()):
        source.update({k: old + k[len(new):] for k in own if k.startswith(new) and old + k[len(new):] in src})
    grown = _grown_vocabulary_rows(qa_model, pretrained, own, src, source)
    bad = [k for k, s in source.items() if own[k].shape != src[s].shape and k not in grown]
    if bad:
        raise ValueError(f"shapes differ between the pretrained and the task model for {bad[:5]}")
    state = {k: src[s] for k, s in source.items() if k not in grown}
    for k in grown:  # the pretrained rows first; the appended words keep their fresh initialisation
        state[k] = own[k].clone()
        state[k][:src[source[k]].shape[0]] = src[source[k]]
    qa_model.load_state_dict(state, strict=False)
    used = set(source.values())
    return {"loaded": list(source), "new": [k for k in own if k not in source], "dropped": [k for k in src if k not in used],
            "grown": grown}


def _grown_vocabulary_rows(model: nn.Module, pretrained: nn.Module, own: dict, src: dict, source: dict) -> list[str]:
    """Keys whose tensors are indexed by the vocabulary and have more rows here, because the task's
    vocabulary is the pretrained one with words appended at the end (e.g. :class:`PairTensors`'s)."""
    V, V0 = getattr(getattr(model, "config", None), "vocab_size", None), getattr(getattr(pretrained, "config", None), "vocab_size", None)
    if V is None or V0 is None or V <= V0:
        return []
    return [k for k, s in source.items()
            if own[k].shape != src[s].shape and own[k].shape[0] == V and src[s].shape[0] == V0
            and own[k].shape[1:] == src[s].shape[1:]]


def finetune_nlvr2(model: nn.Module, adapter: SceneAdapter, pairs, steps: int, *, zero_image: bool = False,
                   batch: int = 64, lr: float = 1e-3, warmup: int = 50, seed: int = 0, progress: bool = False,
                   device=None) -> History:
    """Fine-tune for visual reasoning on ``pairs``' training pairs
    (:class:`~vlp_course.data.vl_tensors.PairTensors`; cross-entropy on true/false), ``steps`` of ``batch`` pairs.
    ``zero_image=True`` trains the statement-only baseline: the same model with both images removed."""
    def step(m, b):
        out = adapter.nlvr2_step(m, b, zero_image)
        return {"loss": out.loss, "acc": (out.logits["nlvr2"].argmax(-1) == b["labels"]).float().mean()}

    return train(model, lambda s: pairs.batch(s, batch, seed=seed), step,
                 TrainConfig(steps=steps, lr=lr, warmup_steps=warmup, seed=seed, progress=progress), device=device)


@torch.no_grad()
def nlvr2_predictions(model: nn.Module, adapter: SceneAdapter, pairs, *, zero_image: bool = False, split: str = "test",
                      batch_size: int = 256) -> Tensor:
    """(P,) the predicted label (1 = true) of every pair of ``split``."""
    model.eval()
    dev = next(model.parameters()).device
    rows = pairs.rows(split)
    out = [adapter.nlvr2_step(model, {k: v.to(dev) for k, v in pairs.take(rows[s:s + batch_size]).items()
                                      if k != "labels"}, zero_image).logits["nlvr2"].argmax(-1).cpu()
           for s in range(0, len(rows), batch_size)]
    return torch.cat(out)


def evaluate_nlvr2(model: nn.Module, adapter: SceneAdapter, pairs, *, zero_image: bool = False, split: str = "test") -> float:
    """Accuracy (in [0, 1]) of the predicted true/false on ``split``'s pairs."""
    pred = nlvr2_predictions(model, adapter, pairs, zero_image=zero_image, split=split)
    return float((pred == pairs.labels[pairs.rows(split)]).float().mean())


def finetune_nlvr2_from(source: nn.Module | None, adapter: SceneAdapter, pairs, steps: int, *, zero_image: bool = False,
                        batch: int = 64, lr: float = 1e-3, warmup: int = 50, seed: int = 0, device=None
                        ) -> tuple[nn.Module, float, float]:
    """:func:`finetune_from` for visual reasoning: a fresh NLVR2 model (weights drawn with
    ``torch.manual_seed(seed)``), the encoder of ``source`` copied in (``None``: from scratch, the grown
    vocabulary rows fresh either way), fine-tuned for ``steps`` of ``batch`` pairs and scored on the held-out pairs.

    Returns:
        ``(model, accuracy, seconds)``: accuracy in [0, 1] and the fine-tune's wall-clock seconds.
    """
    torch.manual_seed(seed)
    model = adapter.nlvr2_model(len(pairs.vocab))
    if source is not None:
        transfer_pretrained(model, source)
    t = time.perf_counter()
    finetune_nlvr2(model, adapter, pairs, steps, zero_image=zero_image, batch=batch, lr=lr, warmup=warmup,
                   seed=seed, device=device)
    seconds = time.perf_counter() - t
    return model, evaluate_nlvr2(model, adapter, pairs, zero_image=zero_image), seconds


def nlvr2_against_statement_only(pretrained: nn.Module | None, adapter: SceneAdapter, pairs, steps: int, *,
                                 batch: int = 64, lr: float = 1e-3, warmup: int = 50, seed: int = 0, device=None
                                 ) -> tuple[dict[str, float], dict[str, float], nn.Module]:
    """Fine-tune two visual-reasoning models for the same budget from the same start (``pretrained``, or
    scratch with None), one with both images removed (the statement-only baseline), and score both on the
    held-out pairs (:func:`finetune_nlvr2_from` twice).

    Returns:
        ``(accuracies, seconds, model)``: ``{"statement only": acc, "with the images": acc, "majority label": acc}``,
        each fine-tune's wall-clock seconds, and the model that sees the images.
    """
    results: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for label, zero_image in (("statement only", True), ("with the images", False)):
        model, results[label], seconds[label] = finetune_nlvr2_from(
            pretrained, adapter, pairs, steps, zero_image=zero_image, batch=batch, lr=lr, warmup=warmup, seed=seed,
            device=device)
    results["majority label"] = pairs.majority_accuracy()
    return results, seconds, model


def training_throughput(adapter: SceneAdapter, task: str, *, batch: int = 64, steps: int = 10, warmup_steps: int = 2,
                        pairs=None, device=None) -> float:
    """Training examples per second of one model on one task: ``steps`` full training steps (forward,
    backward, AdamW update) timed after ``warmup_steps`` untimed ones, on a freshly built model.

    Args:
        task: ``"pretrain"`` (the model's own pretraining tasks, examples = image-caption pairs),
            ``"vqa"`` (examples = questions) or ``"nlvr2"`` (examples = statement-pair examples; needs ``pairs``).
        batch: examples per step.

    Raises:
        ValueError: an unknown ``task``, ``nlvr2`` without ``pairs``, or ``steps`` / ``batch`` below 1.
    """
    if task not in ("pretrain", "vqa", "nlvr2"):
        raise ValueError(f"task must be 'pretrain', 'vqa' or 'nlvr2', got {task!r}")
    if task == "nlvr2" and pairs is None:
        raise ValueError("task 'nlvr2' needs pairs (a PairTensors)")
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be >= 1, got {steps}, {batch}")
    torch.manual_seed(0)
    dev = torch.device(device or "cpu")
    gen = torch.Generator(device=dev).manual_seed(0)
    if task == "pretrain":
        model = adapter.pretraining_model()
        get, step = (lambda s: adapter.st.pretrain_batch(s, batch)), (lambda m, b: adapter.pretrain_step(m, b, gen))
    elif task == "vqa":
        model = adapter.qa_model()
        get = lambda s: {k: v for k, v in adapter.st.vqa_batch(s, batch).items() if k != "rows"}  # noqa: E731
        step = adapter.vqa_step
    else:
        model = adapter.nlvr2_model(len(pairs.vocab))
        get, step = (lambda s: pairs.batch(s, batch)), adapter.nlvr2_step
    model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    t = 0.0
    for s in range(warmup_steps + steps):
        b = {k: v.to(dev) for k, v in get(s).items()}
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step(model, b).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if s >= warmup_steps:
            t += time.perf_counter() - t0
    model.eval()
    return steps * batch / t


def step_scalars(out, batch: dict | None = None) -> dict[str, Tensor]:
    """A :class:`~vlp_course.models.blocks.VLOutput` as the training loop's dict: ``loss``, each task's
    loss, and ``itm_acc`` (matching accuracy) when the model scored matching and the batch has ``is_matched``."""
    res = {"loss": out.loss, **out.losses}
    if batch is not None and "itm" in out.logits and "is_matched" in batch:
        res["itm_acc"] = (out.logits["itm"].argmax(-1) == batch["is_matched"]).float().mean()
    return res


def pretrain(model: nn.Module, adapter: SceneAdapter, steps: int, *, batch: int | None = None, lr: float | None = None,
             warmup: int | None = None, seed: int = 0, progress: bool = False, device=None) -> History:
    """Pretrain ``model`` with its own tasks (``adapter.pretrain_step``) on the training images."""
    r = adapter.recipe
    B = batch or r.batch
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(seed + 17)  # word and region masking draw on the model's device

    def step(m, b):
        return step_scalars(adapter.pretrain_step(m, b, gen), b)

    return train(model, lambda s: adapter.st.pretrain_batch(s, B, seed=seed), step,
                 TrainConfig(steps=steps, lr=lr or r.lr, warmup_steps=r.warmup if warmup is None else warmup, seed=seed,
                             progress=progress), device=device)


def finetune_vqa(model: nn.Module, adapter: SceneAdapter, steps: int, *, zero_image: bool = False, batch: int = 128,
                 lr: float = 1e-3, warmup: int = 50, seed: int = 0, questions: Tensor | None = None,
                 progress: bool = False, device=None) -> History:
    """Fine-tune for VQA (the soft-score loss of the model's original code) on the training questions.

    ``zero_image=True`` trains the question-only baseline: the same model with the image removed.
    ``questions``: the question rows to train on (default all training questions; e.g.
    ``adapter.st.labelled_questions(500)`` for the low-label regime).
    """
    def step(m, b):
        return {"loss": adapter.vqa_step(m, b, zero_image).loss}

    def batches(s):
        return {k: v for k, v in adapter.st.vqa_batch(s, batch, seed=seed, questions=questions).items() if k != "rows"}

    return train(model, batches,
                 step, TrainConfig(steps=steps, lr=lr, warmup_steps=warmup, seed=seed, progress=progress), device=device)


@torch.no_grad()
def evaluate_pretraining(model: nn.Module, adapter: SceneAdapter, *, split: str = "test", batches: int = 8,
                         batch: int = 128, seed: int = 123) -> dict[str, float]:
    """Each pretraining loss (and matching accuracy) averaged over ``batches`` batches of ``split``."""
    model.eval()
    dev = next(model.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(seed)
    sums: dict[str, float] = {}
    for s in range(batches):
        b = {k: v.to(dev) for k, v in adapter.st.pretrain_batch(s, batch, seed=seed, split=split).items()}
        for k, v in step_scalars(adapter.pretrain_step(model, b, gen), b).items():
            sums[k] = sums.get(k, 0.0) + float(v) / batches
    return sums


def vqa_predictions(model: nn.Module, adapter: SceneAdapter, *, zero_image: bool = False, split: str = "test") -> list[dict]:
    """The model's answer to every question of ``split``'s images, with its official VQA accuracy
    (:meth:`~vlp_course.data.vl_tensors.SceneTensors.vqa_predictions`: one dict per question)."""
    model.eval()
    dev = next(model.parameters()).device
    return adapter.st.vqa_predictions(
        lambda b: adapter.vqa_step(model, {k: v.to(dev) for k, v in b.items()}, zero_image).logits["vqa"].cpu(),
        split=split)


def evaluate_vqa(model: nn.Module, adapter: SceneAdapter, *, zero_image: bool = False, split: str = "test") -> float:
    """Official VQA accuracy (:func:`vlp_course.data.vqa.vqa_accuracy`) of the argmax answer on ``split``'s questions."""
    preds = vqa_predictions(model, adapter, zero_image=zero_image, split=split)
    return float(sum(p["accuracy"] for p in preds) / len(preds))


def accuracy_by_answer_type(predictions: list[dict]) -> dict[str, tuple[float, int]]:
    """``{answer_type: (mean VQA accuracy, number of questions)}`` of :func:`vqa_predictions`' output, plus ``"all"``.

    Raises:
        ValueError: if ``predictions`` is empty.
    """
    if not predictions:
        raise ValueError("no predictions to score")
    groups: dict[str, list[float]] = {}
    for p in predictions:
        groups.setdefault(p["answer_type"], []).append(p["accuracy"])
    groups["all"] = [p["accuracy"] for p in predictions]
    return {k: (sum(v) / len(v), len(v)) for k, v in groups.items()}


def answer_types(model: nn.Module, adapter: SceneAdapter) -> tuple[list[dict], dict[str, tuple[float, float, int]]]:
    """The model's held-out predictions (:func:`vqa_predictions`) and, per answer type plus ``"all"``,
    ``(accuracy with the image, accuracy of the same model with the image zeroed, number of questions)``."""
    preds = vqa_predictions(model, adapter)
    blind = accuracy_by_answer_type(vqa_predictions(model, adapter, zero_image=True))
    return preds, {k: (acc, blind[k][0], n) for k, (acc, n) in accuracy_by_answer_type(preds).items()}


def pretrained_against_scratch(pretrained: nn.Module, adapter: SceneAdapter, steps: int, *, labels: int,
                               batch: int = 64, seed: int = 0, device=None) -> dict[str, float]:
    """The low-label comparison: VQA accuracy after the same fine-tune on ``labels`` training questions
    (:meth:`~vlp_course.data.vl_tensors.SceneTensors.labelled_questions`) from ``pretrained`` and from
    scratch: ``{"from the checkpoint": acc, "from scratch": acc}``."""
    questions = adapter.st.labelled_questions(labels, seed=seed)
    return {name: finetune_from(source, adapter, steps, questions=questions, batch=batch, seed=seed, device=device)[1]
            for name, source in (("from the checkpoint", pretrained), ("from scratch", None))}


def finetune_from(source: nn.Module | None, adapter: SceneAdapter, steps: int, *, questions: Tensor | None = None,
                  zero_image: bool = False, batch: int = 128, lr: float = 1e-3, warmup: int = 50, seed: int = 0,
                  device=None) -> tuple[nn.Module, float, float]:
    """A fresh VQA model (its weights drawn with ``torch.manual_seed(seed)``), the encoder of ``source``
    copied in (``None``: from scratch), fine-tuned for ``steps`` and scored on the held-out images.

    Returns:
        ``(qa_model, vqa_accuracy, seconds)``: the official VQA accuracy in [0, 1] and the fine-tune's
        wall-clock seconds (evaluation excluded).
    """
    torch.manual_seed(seed)
    qa = adapter.qa_model()
    if source is not None:
        transfer_pretrained(qa, source)
    t = time.perf_counter()
    finetune_vqa(qa, adapter, steps, zero_image=zero_image, batch=batch, lr=lr, warmup=warmup, seed=seed,
                 questions=questions, device=device)
    seconds = time.perf_counter() - t
    return qa, evaluate_vqa(qa, adapter, zero_image=zero_image), seconds


def vqa_against_question_only(pretrained: nn.Module, adapter: SceneAdapter, steps: int, *, name: str, batch: int = 128,
                              seed: int = 0, lr: float = 1e-3, warmup: int = 50, device=None
                              ) -> tuple[dict[str, float], dict[str, list[str]], dict[str, float], nn.Module]:
    """Fine-tune two VQA models from the same checkpoint for the same budget (``steps`` of ``batch``,
    AdamW at ``lr`` after ``warmup`` steps), one with the image zeroed (the question-only baseline)
    and one with it, and measure both on the held-out images.

    Returns:
        ``(accuracies, moved, seconds)``: accuracies ``{"question only (image zeroed)": acc,
        f"{name} (with the image)": acc, "majority answer": acc}`` (official VQA accuracy in [0, 1]),
        the last :func:`transfer_pretrained` report, each fine-tune's wall-clock seconds, and the
        fine-tuned model that sees the image.
    """
    results: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for label, zero_image in (("question only (image zeroed)", True), (f"{name} (with the image)", False)):
        torch.manual_seed(seed)
        qa = adapter.qa_model()
        moved = transfer_pretrained(qa, pretrained)
        t = time.perf_counter()
        finetune_vqa(qa, adapter, steps, zero_image=zero_image, batch=batch, lr=lr, warmup=warmup, seed=seed,
                     device=device)
        seconds[label] = time.perf_counter() - t
        results[label] = evaluate_vqa(qa, adapter, zero_image=zero_image)
    results["majority answer"] = adapter.st.majority_accuracy()
    return results, moved, seconds, qa


@torch.no_grad()
def colour_word_grounding(adapter: SceneAdapter, word_to_regions: Callable[[Tensor, int], Tensor],
                          images) -> list[tuple[bool, float]]:
    """Does a colour word attend most to the object it names? For each image's first caption, and each
    colour word there that exactly one of the image's objects has: ``(hit, 1 / n)``, where ``hit`` means
    the word's largest attention weight over the image's n objects falls on that object, and ``1 / n``
    is the chance of a hit for uniform attention.

    Args:
        adapter: the scenes (``adapter.st``) the images index.
        word_to_regions: ``(input_ids (1, T), image index) -> (T, N)`` attention from each token of
            ``[CLS] caption [SEP]`` to the image's N >= n region slots, objects first (heads averaged;
            which layer and which attention is the caller's, the model's).
        images: image indices.

    Returns:
        one ``(hit, 1 / n)`` per colour word counted.

    Raises:
        ValueError: if ``word_to_regions`` returns anything but a (T, >= n) tensor.
    """
    st = adapter.st
    counted: list[tuple[bool, float]] = []
    for i in images:
        scene = st.ds.scenes[int(i)]
        words = tokenize(st.ds.captions[int(i)][0])
        ids = torch.tensor([[st.ids[CLS]] + st.vocab.encode(words) + [st.ids[SEP]]])  # (1, T)
        colours = [o.color for o in scene.objects]
        n = len(colours)
        att = word_to_regions(ids, int(i))
        if not isinstance(att, Tensor) or att.ndim != 2 or att.shape[0] != ids.shape[1] or att.shape[1] < n:
            raise ValueError(f"word_to_regions must return (T, N) = ({ids.shape[1]}, >= {n}) attention weights, "
                             f"got {tuple(att.shape) if isinstance(att, Tensor) else type(att).__name__}")
        for k, c in enumerate(colours):
            if colours.count(c) == 1 and c in words:
                row = 1 + words.index(c)  # +1 for [CLS]
                counted.append((int(att[row, :n].argmax()) == k, 1 / n))
    return counted
