"""The training loop under DistributedDataParallel: 2 CPU processes (gloo) with different data per
rank stay in sync, match one process on the concatenated batches, and only rank 0 saves."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from torch import nn

from vlp_course.training import TrainConfig, distributed_loader, train

STEPS = 5


def _data(rank: int):
    g = torch.Generator().manual_seed(100 + rank)  # different data per rank
    X = torch.randn(8, 3, generator=g)
    return X, X @ torch.tensor([1.0, -1.0, 2.0])


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1))


def _step(model, batch):
    x, y = batch
    return {"loss": ((model(x).squeeze(-1) - y) ** 2).mean()}


def _step_bypassing_wrapper(model, batch):  # calls the inner module: the loop must average gradients itself
    x, y = batch
    return {"loss": ((model.module(x).squeeze(-1) - y) ** 2).mean()}


def _worker(rank: int, world: int, port: int, outdir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        for mode, step_fn in (("ddp", _step), ("bypass", _step_bypassing_wrapper)):
            model = _model(seed=rank)  # different initial weights: DDP must broadcast rank 0's
            X, y = _data(rank)
            cfg = TrainConfig(steps=STEPS, lr=0.05, progress=False, optimizer="sgd", momentum=0.0,
                              checkpoint_path=f"{outdir}/{mode}_ck_rank{rank}.safetensors")
            hist = train(model, lambda s: (X, y), step_fn, cfg)
            assert hist.world_size == 2
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{outdir}/{mode}_final_rank{rank}.safetensors")
            torch.save(hist.train["loss"], f"{outdir}/{mode}_loss_rank{rank}.pt")
        # a distributed loader gives disjoint shards
        data = torch.utils.data.TensorDataset(torch.arange(16))
        shard = sorted(i for b in distributed_loader(data, 4, seed=1) for i in b[0].tolist())
        torch.save(shard, f"{outdir}/shard_rank{rank}.pt")
    finally:
        # both ranks reach this point before either tears gloo down: destroying the group while the other
        # rank still talks to it aborted a process once ("terminate called without an active exception")
        dist.barrier()
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_stay_in_sync_and_match_one_process(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    # one process on both ranks' data (mean over equal halves = the mean of the ranks' gradients)
    X0, y0 = _data(0)
    X1, y1 = _data(1)
    single = _model(seed=0)
    train(single, lambda s: (torch.cat([X0, X1]), torch.cat([y0, y1])), _step,
          TrainConfig(steps=STEPS, lr=0.05, progress=False, optimizer="sgd", momentum=0.0))
    init = _model(seed=0).state_dict()
    for mode in ("ddp", "bypass"):  # through the DDP wrapper, and a step_fn that bypasses it
        a = load_file(str(tmp_path / f"{mode}_final_rank0.safetensors"))
        b = load_file(str(tmp_path / f"{mode}_final_rank1.safetensors"))
        for k, v in single.state_dict().items():
            assert torch.equal(a[k], b[k]), (mode, k)  # identical on both ranks
            assert not torch.equal(a[k], init[k])  # and trained
            assert torch.allclose(a[k], v, atol=1e-6), (mode, k)
        # only rank 0 saved a checkpoint; the logged losses are the ranks' average (equal on both)
        assert (tmp_path / f"{mode}_ck_rank0.safetensors").exists()
        assert not (tmp_path / f"{mode}_ck_rank1.safetensors").exists()
        assert torch.load(tmp_path / f"{mode}_loss_rank0.pt") == torch.load(tmp_path / f"{mode}_loss_rank1.pt")
    s0, s1 = torch.load(tmp_path / "shard_rank0.pt"), torch.load(tmp_path / "shard_rank1.pt")
    assert len(s0) == len(s1) == 8 and not set(s0) & set(s1)
