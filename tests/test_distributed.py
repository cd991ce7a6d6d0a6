"""Data-parallel training under torchrun: global-batch batch norm, the per-rank shards, and a 2-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

from classanchor import distributed
from classanchor.benchmark import BenchmarkConfig, run_benchmark
from classanchor.cli import main
from classanchor.data.augment import AugmentSpec
from classanchor.data.loader import DeviceLoader

from .data.conftest import make_mnist


@pytest.fixture
def one_process_group():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("shape", [(6, 3, 5, 4), (7, 3)])
def test_global_batch_norm_is_batch_norm_of_the_batch(one_process_group, shape):
    """With one rank the global batch is the batch: output, gradients and running statistics as torch's kernel."""
    torch.manual_seed(0)
    make = nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d
    plain, patched = make(3), make(3)
    for bn in (plain, patched):
        with torch.no_grad():
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-1.0, 1.0)
    patched.load_state_dict(plain.state_dict())
    x = torch.randn(shape) * 3 + 1
    wrapped = distributed.data_parallel(nn.Sequential(patched))
    outputs = []
    for module in (nn.Sequential(plain), wrapped):
        xi = x.clone().requires_grad_(True)
        for _ in range(2):  # two steps: the running statistics are updated twice
            y = module(xi)
        (y * torch.arange(y.numel()).view(y.shape).sin()).sum().backward()
        outputs.append((y.detach(), xi.grad))
    torch.testing.assert_close(outputs[1][0], outputs[0][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outputs[1][1], outputs[0][1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(patched.weight.grad, plain.weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(patched.bias.grad, plain.bias.grad, rtol=1e-4, atol=1e-5)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(patched, name), getattr(plain, name), rtol=1e-5, atol=1e-6)
    wrapped.eval()
    torch.testing.assert_close(wrapped(x), plain.eval()(x), rtol=1e-5, atol=1e-5)  # eval: running statistics
    distributed.plain_batch_norm(wrapped.module)
    assert "forward" not in patched.__dict__


def test_the_ranks_shards_make_up_each_global_batch_and_weight_it():
    images = np.arange(11 * 8 * 8, dtype=np.uint8).reshape(11, 8, 8)

    def loader():
        return DeviceLoader(images, np.arange(11) % 3, 4, AugmentSpec(8, 0.7), train=True, seed=3)

    whole = [y for _, y in loader()]
    world = 3
    shards = []
    for rank in range(world):
        sharded = distributed.ShardedLoader(loader())
        sharded.rank, sharded.world = rank, world
        shards.append([(y, sharded.loss_scale) for _, y in sharded])
    for k, batch in enumerate(whole):  # batches of 4, 4, 3 images
        parts = [shards[r][k][0] for r in range(world)]
        assert torch.equal(torch.cat(parts), batch)
        scales = [shards[r][k][1] for r in range(world)]
        assert scales == pytest.approx([len(p) * world / len(batch) for p in parts])
        # DDP averages the ranks' weighted means: the global batch's mean of any per-sample value
        values = batch.double() ** 2
        ranks_mean = sum(s * (p.double() ** 2).mean() for s, p in zip(scales, parts) if len(p)) / world
        assert float(ranks_mean) == pytest.approx(float(values.mean()))


# A torchrun script: the classanchor command, with every rename and mkdir logged per rank, and rank 0 killed
# right after writing its KILL_AFTER_STATES-th resume state (0: never).
WRAPPER = """
import os, runpy, sys
log = open(os.path.join(sys.argv[1], "writes%s.txt" % os.environ["RANK"]), "a")
kill_after, states = int(os.environ.get("KILL_AFTER_STATES", "0")), []

def logged(real):
    def call(*args, **kwargs):
        out = real(*args, **kwargs)
        target = str(args[1] if real is not os.mkdir else args[0])
        log.write(os.path.abspath(target) + "\\n")
        log.flush()
        if os.path.basename(target) == "state.pt":
            states.append(target)
            if len(states) == kill_after:
                os._exit(1)
        return out
    return call

os.replace, os.rename, os.mkdir = logged(os.replace), logged(os.rename), logged(os.mkdir)
sys.argv = ["classanchor", *sys.argv[2:]]
runpy.run_module("classanchor", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_torchrun_two_processes_train_as_one_with_the_global_batch_and_resume(tmp_path, monkeypatch, capsys):
    """2 ranks (gloo, CPU) on a BatchNorm CNN: the per-epoch losses are the single-process ones (rtol 1e-4);
    killed after epoch 1 of 4 and started again, the run resumes; rank 1 writes nothing in the run folder."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CLASSANCHOR_CACHE", str(cache))
    make_mnist(tmp_path / "data", per_class=(90, 4))  # 432 training images: 3 batches of 128 per epoch
    options = dict(dataset="MNIST", data_root=str(tmp_path / "data"), trials=(0,), methods=("cac",),
                   epochs_scale=0.04, backbone="small_cnn", device="cpu", precision="float32")
    single, _ = run_benchmark(BenchmarkConfig(out=str(tmp_path / "single"), **options), progress=False)
    expected = json.loads((tmp_path / "single" / "trial0" / "cac" / "history.json").read_text())
    assert len(expected) == 4  # 2 + 2 epochs

    run = tmp_path / "run"
    (tmp_path / "wrapper.py").write_text(WRAPPER)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(tmp_path / "wrapper.py"), str(tmp_path), "benchmark", "mnist", "--data-root",
               str(tmp_path / "data"), "--trials", "0", "--methods", "cac", "--epochs-scale", "0.04", "--backbone",
               "small_cnn", "--device", "cpu", "--precision", "float32", "--out", str(run), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CLASSANCHOR_CACHE": str(cache), "TMPDIR": str(tmp_path)}
    killed = subprocess.run(command, env={**env, "KILL_AFTER_STATES": "1"}, capture_output=True, text=True,
                            timeout=300)
    job = run / "trial0" / "cac"
    assert killed.returncode != 0 and (job / "state.pt").exists(), killed.stderr[-3000:]
    assert not (job / "result.json").exists()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    history = json.loads((job / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    for got, want in zip(history, expected):
        for key in ("train_loss", "val_loss", "val_anchor_loss"):
            assert got[key] == pytest.approx(want[key], rel=1e-4), (got["epoch"], key)
        for key in ("train_accuracy", "val_accuracy"):
            assert got[key] == pytest.approx(want[key], abs=0.01), (got["epoch"], key)
    result = json.loads((job / "result.json").read_text())
    assert result["accuracy"] == pytest.approx(single[0]["accuracy"], abs=0.03)
    assert torch.load(job / "state.pt", weights_only=True)["world_size"] == 2

    rank1 = (tmp_path / "writes1.txt").read_text().splitlines()
    assert rank1 and not [path for path in rank1 if path.startswith(str(run))]  # its scratch folder only
    rank0 = (tmp_path / "writes0.txt").read_text()
    assert rank0.count(f"{job / 'state.pt'}\n") == 4  # epoch 1 before the kill, then epochs 2-4: resumed
    assert str(job / "result.json") in rank0 and str(run / "results.json") in rank0
    assert "MNIST: open-set benchmark" in done.stdout

    # resuming the 2-process state in one process is refused with the reason and the fix; nothing is lost
    (job / "result.json").unlink()
    code = main(["benchmark", "mnist", "--data-root", str(tmp_path / "data"), "--trials", "0", "--methods", "cac",
                 "--epochs-scale", "0.04", "--backbone", "small_cnn", "--device", "cpu", "--precision", "float32",
                 "--out", str(run), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "written by a run on 2 process(es), this one has 1" in err and "--nproc-per-node 2" in err
    assert len(err.strip().splitlines()) == 1 and (job / "state.pt").exists()
