"""Atomic file writes and run folders (config, library version and git commit beside every result)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from ._version import __version__

__all__ = ["atomic_write", "write_json", "write_text", "read_json", "save_torch", "git_commit", "RunFolder"]


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` with ``os.replace``.

    Readers see either the old file or the complete new one, never a half-written file; on an error
    the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: os.umask is process-global


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    return value


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` (dataclasses, numpy and torch values allowed) as indented JSON, atomically."""
    text = json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file with an error that names the file when it is missing or corrupt."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist.") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the file is corrupt, delete it and re-run.") from None


def save_torch(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` to ``path`` atomically (checkpoints survive a kill mid-write)."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """The commit of the git checkout holding this library (with '-dirty' if it has changes), or None."""
    where = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


@dataclasses.dataclass
class RunFolder:
    """A folder holding one run: ``config.json`` (config + library version + git commit) and results."""

    path: Path

    @classmethod
    def create(cls, path: str | os.PathLike, config: Any) -> "RunFolder":
        """Create (or reopen) the folder and write its ``config.json``.

        Reopening with a different config raises, so a resumed run can never mix two settings.
        """
        folder = cls(Path(path))
        folder.path.mkdir(parents=True, exist_ok=True)
        record = {"config": _jsonable(config), "classanchor_version": __version__, "git_commit": git_commit(),
                  "torch_version": torch.__version__}
        config_path = folder.path / "config.json"
        if config_path.exists():
            old = read_json(config_path)
            if old.get("config") != record["config"]:
                raise ValueError(
                    f"{config_path} holds a different config than this run; use a new --out folder or delete "
                    "the old one to start over."
                )
            history = old.get("sessions", [])
        else:
            history = []
        record["sessions"] = history + [{"classanchor_version": __version__, "git_commit": record["git_commit"]}]
        write_json(config_path, record)
        return folder

    def file(self, *parts: str) -> Path:
        p = self.path.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p
