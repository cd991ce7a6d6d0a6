"""Jobs on an executor: in this process or as Ray tasks; the run folder is the same wherever the jobs ran."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from classanchor.benchmark import BenchmarkConfig, run_benchmark
from classanchor.cli import main
from classanchor.executors import InProcess, Job, JobsFailed, RayExecutor, make_executor
from classanchor.io import RunFolder

from .data.conftest import make_mnist

#: Keys that depend on where and when a job ran, not on what it computed (and the weights' digest: the weights
#: themselves are compared within float tolerance).
RUN_KEYS = {"train_seconds", "eval_seconds", "seconds", "train_images_per_s", "threads", "out", "sessions", "sha256",
            "created"}


def test_importing_classanchor_does_not_import_ray():
    code = ("import sys, classanchor, classanchor.benchmark, classanchor.studies, classanchor.executors, "
            "classanchor.cli; assert 'ray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_executor_options_are_checked_before_anything_runs(tmp_path, capsys, monkeypatch):
    assert isinstance(make_executor("local"), InProcess)
    with pytest.raises(ValueError, match="need --executor ray"):
        make_executor("local", gpus_per_job=1)
    with pytest.raises(ValueError, match="unknown executor 'dask'"):
        make_executor("dask")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    with pytest.raises(ImportError, match=r"pip install 'classanchor\[ray\]'"):
        RayExecutor().run([Job("a", abs, (1,))])
    # an unreachable cluster: one line, exit code 2, before the run folder is touched
    base = ["benchmark", "mnist", "--data-root", str(tmp_path), "--trials", "0", "--out", str(tmp_path / "run"),
            "--no-progress"]
    assert main([*base, "--executor", "ray", "--ray-address", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach a Ray cluster at 127.0.0.1:1" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
    assert main([*base, "--cpus-per-job", "2"]) == 2
    assert "need --executor ray" in capsys.readouterr().err


# ---- on a local Ray instance with 2 workers ------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    ray = pytest.importorskip("ray")
    cache = tmp_path_factory.mktemp("ray_cache")  # the workers' data cache (never ~/.cache)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", object_store_memory=100 * 2**20,
             runtime_env={"env_vars": {"CLASSANCHOR_CACHE": str(cache), "OMP_NUM_THREADS": "1"}})
    yield cache
    ray.shutdown()


@pytest.mark.slow
def test_ray_retries_a_failing_job_then_reports_it_while_the_others_finish(local_ray, tmp_path, capsys):
    """A job that raises, a job whose worker dies mid-job: retried; one failing every time: reported."""

    def attempt(path: str, failures: int, die: bool = False) -> int:  # nested: Ray pickles it by value
        """Count this attempt in ``path``; fail the first ``failures`` attempts (raise, or end the worker)."""
        file = Path(path)
        count = len(file.read_text()) + 1 if file.exists() else 1
        file.write_text("x" * count)
        if count <= failures and die:
            os._exit(1)  # the worker process dies mid-job
        if count <= failures:
            raise ValueError(f"attempt {count} fails")
        return count

    jobs = [Job("ok", attempt, (str(tmp_path / "ok"), 0)), Job("flaky", attempt, (str(tmp_path / "flaky"), 1)),
            Job("broken", attempt, (str(tmp_path / "broken"), 99)),
            Job("killed", attempt, (str(tmp_path / "killed"), 1, True))]
    with pytest.raises(JobsFailed, match=r"^1 of 4 jobs failed after 3 attempts each: broken \(ValueError: "
                                         r"attempt 3 fails\)"):
        RayExecutor(max_retries=2).run(jobs, progress=False)
    assert [len((tmp_path / name).read_text()) for name in ("ok", "flaky", "broken", "killed")] == [1, 2, 3, 2]
    err = capsys.readouterr().err
    assert "job broken failed after 3 attempts" in err and "in attempt" in err and "attempt 3 fails" in err  # traceback


def _same(a, b, where: str = "") -> None:
    """JSON values equal, numbers within float tolerance, the keys of :data:`RUN_KEYS` ignored."""
    if isinstance(a, dict):
        assert set(a) - RUN_KEYS == set(b) - RUN_KEYS, where
        for key in set(a) - RUN_KEYS:
            _same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6) or (math.isnan(a) and math.isnan(b)), where
    else:
        assert a == b, where


def _same_folders(left: Path, right: Path) -> None:
    files = sorted(p.relative_to(left) for p in left.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(right) for p in right.rglob("*") if p.is_file())
    for name in files:
        if name.suffix == ".json":
            _same(json.loads((left / name).read_text()), json.loads((right / name).read_text()), str(name))
        elif name.suffix == ".npz":
            with np.load(left / name, allow_pickle=False) as a, np.load(right / name, allow_pickle=False) as b:
                assert set(a.files) == set(b.files)
                for key in a.files:
                    np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5, err_msg=f"{name}:{key}")
        elif name.suffix == ".safetensors":
            from safetensors.numpy import load_file

            a, b = load_file(left / name), load_file(right / name)
            for key in a:
                np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5, err_msg=f"{name}:{key}")


@pytest.mark.slow
def test_ray_benchmark_writes_the_in_process_run_folder_and_resubmits_only_unfinished_jobs(
        local_ray, tmp_path, monkeypatch):
    """2 trials x 2 methods: a job that raises (a corrupt resume state) is retried and reported while the other
    three finish; once fixed, only it runs again; the folder then equals the in-process one; a re-run submits
    nothing."""
    monkeypatch.setenv("CLASSANCHOR_CACHE", str(local_ray))
    make_mnist(tmp_path / "data", per_class=(10, 4))
    options = dict(dataset="MNIST", data_root=str(tmp_path / "data"), trials=(0, 1), methods=("cac", "ce"),
                   epochs_scale=0.02, backbone="mlp", device="cpu", precision="float32")
    run_benchmark(BenchmarkConfig(out=str(tmp_path / "local"), **options), progress=False)

    executor = RayExecutor(max_retries=1)
    submitted = []
    run = executor.run
    monkeypatch.setattr(executor, "run", lambda jobs, progress: submitted.append([j.name for j in jobs]) or
                        run(jobs, progress))
    config = BenchmarkConfig(out=str(tmp_path / "ray"), **options)
    RunFolder.create(config.out, config)  # a run folder in which one job's resume state is corrupt
    corrupt = tmp_path / "ray" / "trial1" / "ce" / "state.pt"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"not a resume state")
    with pytest.raises(JobsFailed, match=r"1 of 4 jobs failed after 2 attempts each: trial1/ce \(ValueError: "
                                         r".*state.pt is not a readable classanchor resume state"):
        run_benchmark(config, progress=False, executor=executor)
    done = sorted(str(p.parent.relative_to(tmp_path / "ray")) for p in (tmp_path / "ray").rglob("result.json"))
    assert done == ["trial0/cac", "trial0/ce", "trial1/cac"]

    corrupt.unlink()
    results, table = run_benchmark(config, progress=False, executor=executor)
    assert submitted == [["trial0/cac", "trial0/ce", "trial1/cac", "trial1/ce"], ["trial1/ce"]]
    _same_folders(tmp_path / "local", tmp_path / "ray")
    assert "| cac | 2 |" in table and len(results) == 4

    run_benchmark(config, progress=False, executor=executor)
    assert submitted[-1] == []
