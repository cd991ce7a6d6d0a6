"""Where independent jobs run: one after another in this process (default), or as tasks on a Ray cluster.

A :class:`Job` is ``function(*args)`` with a name: the benchmark and the studies hand each unfinished training
to an executor as one job, which writes its own job folder atomically wherever it runs. Ray is imported only
when :class:`RayExecutor` runs jobs (``pip install classanchor[ray]``). See docs/scale.md. Example::

    >>> InProcess().run([Job("a", abs, (-2,)), Job("b", max, (1, 3))], progress=False)
    [2, 3]
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from .cpu_memory import keep_freed_memory

__all__ = ["EXECUTORS", "InProcess", "Job", "JobsFailed", "RayExecutor", "make_executor"]

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Job:
    """``function(*args)``, named (e.g. ``trial0/cac``) in the progress display and in errors. Ray pickles
    ``function`` and ``args`` to a worker: a module-level function and plain values."""

    name: str
    function: Callable[..., Any]
    args: tuple = ()


class JobsFailed(RuntimeError):
    """Some jobs failed (after their retries) while the others finished."""


def _bar(total: int, progress: bool):
    return tqdm(total=total, unit="job", desc="jobs", disable=not progress or total == 0, dynamic_ncols=True)


class InProcess:
    """Run the jobs one after another in this process; the first error stops the run (no retry)."""

    in_process = True

    def run(self, jobs: Sequence[Job], progress: bool = True) -> list:
        results = []
        with _bar(len(jobs), progress) as bar:
            for i, job in enumerate(jobs):
                bar.set_postfix(running=job.name, queued=len(jobs) - i - 1)
                results.append(job.function(*job.args))
                bar.update(1)
        return results


def _call(function: Callable[..., Any], args: tuple, threads: int) -> Any:
    """A job inside a Ray worker: torch uses the CPUs the task asked for and keeps freed memory, as the
    ``classanchor`` command does."""
    import torch

    torch.set_num_threads(threads)
    keep_freed_memory()
    return function(*args)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A clear ``ConnectionError`` now when nothing listens at ``host:port`` (``ray.init`` would wait long)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise ConnectionError(
            f"cannot reach a Ray cluster at {address} ({err.strerror or err}); start one with `ray start --head` on "
            "the head node and pass its address (host:6379), or leave out --ray-address to run Ray on this "
            "machine.") from None


class RayExecutor:
    """Each job is a Ray task asking for ``cpus_per_job`` CPUs and ``gpus_per_job`` GPUs. ``address``: a
    running cluster (``host:6379``, ``ray://host:10001`` or ``auto``); ``None`` starts Ray on this machine and
    stops it afterwards (a Ray instance this process started already is used as it is). A job that raises, or
    whose worker dies, runs again up to ``max_retries`` times; one that still fails is reported with its
    traceback while the others go on, and :class:`JobsFailed` names them all at the end."""

    in_process = False

    def __init__(self, address: str | None = None, cpus_per_job: int = 1, gpus_per_job: float = 0.0,
                 max_retries: int = 2) -> None:
        if address:
            _check_reachable(address)
        self.address, self.cpus, self.gpus, self.max_retries = address, cpus_per_job, gpus_per_job, max_retries

    def run(self, jobs: Sequence[Job], progress: bool = True) -> list:
        """The jobs' return values, in order (``None`` for a failed job, after all of them ended)."""
        if not jobs:
            return []
        try:
            import ray
        except ImportError:
            raise ImportError("--executor ray needs the ray package: pip install 'classanchor[ray]'") from None
        started = not ray.is_initialized()
        if started:
            ray.init(address=self.address, include_dashboard=False, logging_level="ERROR")
        task = ray.remote(_call).options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=self.max_retries,
                                         retry_exceptions=True)
        waiting = [task.remote(job.function, job.args, max(1, int(self.cpus))) for job in jobs]
        index = {ref: i for i, ref in enumerate(waiting)}
        results: list = [None] * len(jobs)
        failed: list[str] = []
        kind, each = ("GPU", self.gpus) if self.gpus else ("CPU", self.cpus)
        try:
            with _bar(len(jobs), progress) as bar:
                while waiting:
                    done, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=1.0)
                    for ref in done:
                        try:
                            results[index[ref]] = ray.get(ref)
                        except ray.exceptions.RayError as err:
                            failed.append(self._report(jobs[index[ref]].name, err))
                        bar.update(1)
                    # jobs running now, from the resources in use (the cluster's, so other work counts too)
                    used = ray.cluster_resources().get(kind, 0) - ray.available_resources().get(kind, 0)
                    running = min(len(waiting), round(used / each))
                    bar.set_postfix(running=running, queued=len(waiting) - running, failed=len(failed))
        except BaseException:
            for ref in waiting:
                ray.cancel(ref)
            raise
        finally:
            if started:
                ray.shutdown()
        if failed:
            raise JobsFailed(f"{len(failed)} of {len(jobs)} jobs failed after {1 + self.max_retries} attempts each: "
                             f"{'; '.join(failed)}. Their tracebacks are printed above; the finished jobs are kept, "
                             "re-run the same command to run the failed ones again.")
        return results

    def _report(self, name: str, err: Exception) -> str:
        """Print the job's traceback; return ``name (Error: first line)``."""
        cause = getattr(err, "cause", None) or err
        tqdm.write(f"job {name} failed after {1 + self.max_retries} attempts:\n{err}", file=sys.stderr)
        return f"{name} ({type(cause).__name__}: {(str(cause).splitlines() or [''])[0]})"


def make_executor(name: str = "local", *, address: str | None = None, cpus_per_job: int | None = None,
                  gpus_per_job: float | None = None) -> InProcess | RayExecutor:
    """The executor for ``--executor NAME`` and its options (the Ray ones need ``ray``; torchrun runs in-process)."""
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}.")
    if name == "local":
        if address is not None or cpus_per_job is not None or gpus_per_job is not None:
            raise ValueError("--ray-address, --cpus-per-job and --gpus-per-job need --executor ray.")
        return InProcess()
    from .distributed import launched

    if launched():
        raise ValueError("--executor ray does not run under torchrun; use one or the other.")
    return RayExecutor(address, cpus_per_job or 1, gpus_per_job or 0.0)
