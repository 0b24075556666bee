"""Weight files that are not what their name says: every reader in vlp_course.checkpoints refuses an
empty file, a truncated file and a torch.save archive or pickle named .safetensors with a ValueError
that names the file and what it appears to be (instead of the safetensors library's own error)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from vlp_course.checkpoints import (
    check_safetensors_file,
    load_checkpoint,
    load_optimizer_state,
    load_safetensors,
    read_checkpoint,
    read_metadata,
    save_checkpoint,
    save_safetensors,
)


class Tied(nn.Module):
    """A word embedding shared with a decoder, as in the MLM heads."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(7, 3)
        self.dec = nn.Linear(3, 7, bias=False)
        self.dec.weight = self.emb.weight


def readers(model):
    """Every public reader of a .safetensors path."""
    return {
        "load_checkpoint": lambda p: load_checkpoint(model, p),
        "load_optimizer_state": lambda p: load_optimizer_state(torch.optim.SGD(model.parameters(), lr=0.1), p),
        "read_metadata": read_metadata,
        "load_safetensors": load_safetensors,
        "read_checkpoint": read_checkpoint,
        "check_safetensors_file": check_safetensors_file,
    }


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return Tied()


@pytest.mark.parametrize("reader", list(readers(None)))
def test_empty_file(tmp_path, model, reader):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.safetensors is empty \(0 bytes\)"):
        readers(model)[reader](path)


@pytest.mark.parametrize("reader", list(readers(None)))
def test_truncated_data_gives_both_sizes(tmp_path, model, reader):
    good = save_checkpoint(model, tmp_path / "good.safetensors", {"step": 3})
    data = good.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    expected = 8 + n + max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    assert expected == len(data)  # the check's own arithmetic, on a whole file
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:-10])
    msg = rf"cut\.safetensors is truncated: the header says {expected} bytes, the file has {expected - 10}"
    with pytest.raises(ValueError, match=msg):
        readers(model)[reader](cut)


def test_truncated_inside_the_header_and_before_it(tmp_path):
    data = save_safetensors({"w": torch.ones(4)}, tmp_path / "a.safetensors").read_bytes()
    n = int.from_bytes(data[:8], "little")
    short = tmp_path / "short.safetensors"
    short.write_bytes(data[:20])
    with pytest.raises(ValueError, match=rf"short\.safetensors is truncated: the header says it has at least {8 + n} bytes, the file has 20"):
        load_safetensors(short)
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(data[:5])
    with pytest.raises(ValueError, match=r"tiny\.safetensors is truncated: .*8-byte header length, the file has 5 bytes"):
        load_safetensors(tiny)


@pytest.mark.parametrize("zipfile, what", [(True, "zip archive"), (False, "pickle")])
@pytest.mark.parametrize("reader", list(readers(None)))
def test_torch_save_file_named_safetensors(tmp_path, model, reader, zipfile, what):
    path = tmp_path / "model.safetensors"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=zipfile)
    with pytest.raises(ValueError, match=rf"model\.safetensors is not a safetensors file but a {what}.*use torch\.load.*or convert it"):
        readers(model)[reader](path)


def test_trailing_bytes_and_a_non_json_header(tmp_path):
    data = save_safetensors({"w": torch.ones(4)}, tmp_path / "a.safetensors").read_bytes()
    longer = tmp_path / "longer.safetensors"
    longer.write_bytes(data + b"\0" * 3)
    with pytest.raises(ValueError, match=rf"longer\.safetensors is corrupted: the header accounts for {len(data)} bytes, the file has {len(data) + 3}"):
        load_safetensors(longer)
    text = tmp_path / "notes.safetensors"
    text.write_bytes((12).to_bytes(8, "little") + b"hello world!")
    with pytest.raises(ValueError, match=r"notes\.safetensors is not a safetensors file: the 12-byte header .* is not JSON"):
        load_safetensors(text)


def test_missing_file_is_file_not_found(tmp_path, model):
    for name, read in readers(model).items():
        with pytest.raises(FileNotFoundError, match="nope.safetensors"):
            read(tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError, match="nope.bin"):
        read_checkpoint(tmp_path / "nope.bin")


def test_torch_save_readers(tmp_path, model):
    """read_checkpoint reads an original torch.save file, and names the file when it cannot."""
    sd = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2])}
    good = tmp_path / "model_LXRT.pth"
    torch.save(sd, good)
    back = read_checkpoint(good)
    assert set(back) == {"a", "b"} and torch.equal(back["a"], sd["a"]) and torch.equal(back["b"], sd["b"])
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cut\.pth \(a zip archive \(what torch.save writes\), \d+ bytes\) could not be read"):
        read_checkpoint(cut)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.bin is empty"):
        read_checkpoint(empty)
    renamed = tmp_path / "weights.bin"
    renamed.write_bytes(save_safetensors(sd, tmp_path / "w.safetensors").read_bytes())
    with pytest.raises(ValueError, match=r"weights\.bin is a safetensors file under another suffix"):
        read_checkpoint(renamed)


def test_save_safetensors_stores_a_tied_tensor_once(tmp_path, model):
    path = save_safetensors(model, tmp_path / "t.safetensors", metadata={"note": "x"})
    header = check_safetensors_file(path)
    assert set(header) - {"__metadata__"} == {"emb.weight"}  # the decoder's copy is not stored
    assert header["__metadata__"]["note"] == "x"
    back = load_safetensors(path)
    assert set(back) == {"emb.weight", "dec.weight"} and torch.equal(back["dec.weight"], model.emb.weight)
    with pytest.raises(ValueError, match="strings only"):
        save_safetensors(model, tmp_path / "u.safetensors", metadata={"step": 3})
