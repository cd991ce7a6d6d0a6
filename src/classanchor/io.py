"""Atomic file writes and run folders (config, library version and git commit beside every result).

Every write goes to a private temporary beside its target and is moved in place with ``os.replace``; a write
that fails leaves the old file and no temporary, and a full disk, a read-only file system or a missing
permission becomes one ``OSError`` naming the path and the fix (:func:`write_failure`). The temporaries a
killed process left behind are removed by the next write of the same target (:func:`clean_stale_temporaries`).
"""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ._version import __version__

__all__ = ["atomic_write", "write_json", "write_text", "write_npz", "read_json", "save_torch", "git_commit",
           "run_environment", "RunFolder", "clean_stale_temporaries", "open_run_folder", "write_failure"]

#: A leftover temporary is stale when last touched before this process started and at least
#: :data:`STALE_AFTER_S` ago, so a concurrent writer's temporary is never taken away from under it.
_PROCESS_START = time.time()
STALE_AFTER_S = 300.0
#: This library's temporaries of a target ``<name>``: ``.<name>.XXXXXXXX.tmp`` (a file or folder being built;
#: the 8 characters of ``mkstemp``/``mkdtemp``) and ``.<name>.XXXXXXXX.old`` (a model folder swapped out).
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.(?P<kind>tmp|old)$")
_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
#: Write errors that are the disk's or the folder's, not the program's.
_NOT_WRITABLE = (*_DISK_FULL, errno.EROFS, errno.EACCES, errno.EPERM)


def _last_touched(path: Path, depth: int = 2) -> float:
    """The newest mtime of ``path`` and of what lies up to ``depth`` levels below it (a temporary folder)."""
    below = path.iterdir() if depth and path.is_dir() and not path.is_symlink() else ()
    return max([path.lstat().st_mtime, *(_last_touched(p, depth - 1) for p in below)])


def clean_stale_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove the stale temporaries (:data:`_TEMPORARY`, of target ``name`` if given) in ``folder``. Returns
    what was removed. A ``.old`` folder still holding the only copy of a model (no ``<name>`` beside it) is
    kept: loading the model restores it (:mod:`classanchor.model_io`)."""
    folder = Path(folder)
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    cutoff, removed = min(_PROCESS_START, time.time() - STALE_AFTER_S), []
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if not match or name not in (None, match["name"]):
            continue
        if match["kind"] == "old" and not (folder / match["name"]).exists():
            continue  # it may hold the only complete copy: restored on load, never deleted here
        try:
            if _last_touched(entry) < cutoff:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(entry)
        except OSError:
            pass  # gone already, or not ours to remove: leave it
    return removed


def write_failure(path: str | os.PathLike, err: BaseException) -> OSError:
    """A clear ``OSError`` for a failed write of ``path``, naming the path, the cause and the fix. ``err``: an
    ``OSError`` or an error a library raised around one (safetensors' ``SafetensorError``). The result keeps
    ``errno`` (``ENOSPC`` for a full disk) and has no ``filename`` (no temporary's name)."""
    code = getattr(err, "errno", None)
    if code in _DISK_FULL or any(s in str(err) for s in ("No space left", "StorageFull", "Disk quota",
                                                         "os error 28", "code: 28")):
        code, cause = code or errno.ENOSPC, "the disk is full (no space left on device); free some space and run again"
    elif code == errno.EROFS:
        cause = "the file system is read-only; choose a folder on a writable disk"
    elif code in (errno.EACCES, errno.EPERM):
        cause = "permission denied; choose a folder you can write to"
    else:
        cause = (getattr(err, "strerror", None) or str(err).splitlines()[0]) if str(err) else type(err).__name__
    failure = OSError(f"could not write {path}: {cause} (nothing was written to {path}).")
    failure.errno = code
    return failure


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` with ``os.replace`` (the module's policy:
    readers see the old file or the complete new one); a folder ``path`` raises ``IsADirectoryError``."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the path of a file to write (nothing was written).")
    tmp = _temporary_sibling(path, _new_file)
    try:
        write(tmp)
        give_usual_permissions(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in _NOT_WRITABLE:
            raise write_failure(path, err) from err
        raise
    return path


def _new_file(**names) -> str:
    fd, name = tempfile.mkstemp(**names)
    os.close(fd)
    return name


def _temporary_sibling(target: Path, make: Callable[..., str]) -> Path:
    """``make(prefix=, suffix=, dir=)`` a private ``.<name>.XXXXXXXX.tmp`` beside ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(target.parent, target.name)
    try:
        return Path(make(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as err:
        raise write_failure(target, err) from err


def temporary_sibling_folder(target: str | os.PathLike) -> Path:
    """A new private folder ``.<name>.XXXXXXXX.tmp`` beside ``target`` to build it in, then swap it in."""
    return _temporary_sibling(Path(target), tempfile.mkdtemp)


_UMASK = os.umask(0)  # read once at import (os.umask is process-global), then restored
os.umask(_UMASK)


def give_usual_permissions(path: str | os.PathLike, *, directory: bool = False) -> None:
    """chmod ``path`` to what a plain ``open``/``mkdir`` would give (mkstemp/mkdtemp create 0600/0700)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_UMASK)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # torch tensors, numpy arrays and scalars
        return value.tolist()
    return value


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` (dataclasses, numpy and torch values allowed) as indented JSON, atomically."""
    return write_text(path, json.dumps(_jsonable(data), indent=2) + "\n")


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file with an error that names the file when it is missing or corrupt."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist.") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the file is corrupt, delete it and re-run.") from None


def _write_serialised(path: str | os.PathLike, dump: Callable[[io.BytesIO], None]) -> Path:
    """``dump`` into memory, then write the bytes atomically (on a full disk torch.save reports only
    ``[enforce fail at inline_container.cc]``; a plain write reports ``ENOSPC``)."""
    buffer = io.BytesIO()
    dump(buffer)
    return atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))


def save_torch(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` to ``path`` atomically."""
    return _write_serialised(path, lambda file: torch.save(obj, file))


def write_npz(path: str | os.PathLike, arrays: dict) -> Path:
    """``np.savez_compressed`` atomically (numeric arrays only; read back with ``allow_pickle=False``)."""
    return _write_serialised(path, lambda file: np.savez_compressed(file, **arrays))


def git_commit() -> str | None:
    """The commit of the git checkout holding this library (with '-dirty' if it has changes), or None. Only a
    source checkout (``src/classanchor`` in a folder with ``.git``) is asked, not an installed package;
    ``GIT_OPTIONAL_LOCKS=0`` keeps git from taking ``.git/index.lock`` from the user's own git."""
    where = Path(__file__).resolve().parent
    if not (where.parents[1] / ".git").exists():
        return None

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=5,
                              check=True, env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"}).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def run_environment(device: torch.device | str, precision: str) -> dict:
    """What a result depends on besides its config: precision, device, threads, versions, commit, CPU."""
    return {"precision": precision, "device": str(device), "threads": torch.get_num_threads(),
            "torch_version": torch.__version__, "classanchor_version": __version__, "git_commit": git_commit(),
            "cpu": _cpu_name() or platform.machine()}


def _cpu_name() -> str | None:
    """The CPU model from /proc/cpuinfo (Linux), e.g. 'AMD EPYC ...'; None elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        return None


def open_run_folder(path: str | os.PathLike) -> Path:
    """Create the run folder ``path`` (and its parents), or check that the existing folder is one; returns it.
    Refused, naming the fix: a file, a place that cannot be written, and a folder holding visible entries but
    neither a ``config.json`` (a command's) nor a ``study_*.json`` (a study's): a run never mixes its files
    into a folder of other files."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a run folder; choose another --out folder.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_failure(path, err) from err
    foreign = sorted(e.name for e in path.iterdir() if not e.name.startswith("."))
    if foreign and not (path / "config.json").is_file() and not any(path.glob("study_*.json")):
        raise ValueError(f"{path} is not empty and is not a classanchor run folder (no config.json; it holds "
                         f"{', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); choose another --out "
                         "folder or empty this one.")
    return path


#: Config fields a reopened run may change: where the folder is, and which trials and methods run (the union).
_SELECTION = ("trials", "methods")
_FREE = ("out", *_SELECTION)


def _union(before, now):
    """The values of a :data:`_SELECTION` field over all sessions: ordered, integers (trials) sorted."""
    merged = list(dict.fromkeys([*(before if isinstance(before, list) else []), *now]))
    return sorted(merged) if all(isinstance(v, int) for v in merged) else merged


@dataclasses.dataclass
class RunFolder:
    """A folder holding one run: ``config.json`` (config + library version + git commit) and results;
    ``config``: this session's config, with the trials and methods of earlier sessions added."""

    path: Path
    config: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def create(cls, path: str | os.PathLike, config: Any) -> "RunFolder":
        """Create (or reopen) the folder (:func:`open_run_folder`) and write its ``config.json``. Reopening
        with another config (beyond :data:`_FREE`) raises, naming the fields that differ, so a resumed run
        never mixes two settings."""
        folder = cls(open_run_folder(path), _jsonable(config))  # config: a dataclass's dict of fields
        now, config_path = folder.config, folder.path / "config.json"
        old = read_json(config_path) if config_path.exists() else None
        if old is not None:
            before = old.get("config") if isinstance(old.get("config"), dict) else {}
            differ = [f"{key}: {before.get(key)!r} there, {value!r} now" for key, value in now.items()
                      if before.get(key) != value and key not in _FREE]
            differ += [f"{key}: {value!r} there, absent now" for key, value in before.items()
                       if key not in now and key not in _FREE]
            if differ:
                raise ValueError(
                    f"{config_path} holds a different config than this run ({'; '.join(differ[:4])}); use a new "
                    "--out folder, the same settings, or delete the old folder to start over.")
            now.update({key: _union(before.get(key), now[key]) for key in _SELECTION if key in now})
        session = {"classanchor_version": __version__, "git_commit": git_commit()}
        write_json(config_path, {"config": now, **session, "torch_version": torch.__version__,
                                 "sessions": (old or {}).get("sessions", []) + [session]})
        return folder

    def file(self, *parts: str) -> Path:
        return self.path.joinpath(*parts)  # the writes of classanchor.io create its parent folders

