"""Where image files come from: :class:`FileSource` for folders, zips and single files; the image suffixes.

A source is a folder, a zip or a folder inside one (``photos.zip/photos/train``), or one file (``cat.jpg``,
``photos.zip/photos/cat.jpg``). Names are posix paths relative to the source; hidden files (a part starting
with ``.``, ``__MACOSX/``) are never listed. Zip entries whose name is absolute or has a ``..`` part would
point outside the archive: never read, listed in :attr:`FileSource.skipped`. Example::

    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = (pathlib.Path(tmp) / "cat").mkdir(), (pathlib.Path(tmp) / "cat" / "a.png").write_bytes(b"x")
    ...     with FileSource(tmp) as source:
    ...         source.names(), source.read("cat/a.png")
    (['cat/a.png'], b'x')
"""

from __future__ import annotations

import bisect
import os
import posixpath
import re
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from .cache import file_fingerprint
from .imageset import DataError, PathLike

__all__ = ["IMAGE_SUFFIXES", "OUTSIDE_ARCHIVE", "ExpandedPaths", "FileSource", "SkippedFile", "expand_paths",
           "is_image_name"]

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                                   ".pgm", ".pbm")
OUTSIDE_ARCHIVE = "outside the archive (an absolute name or one with a '..' part): not read"
_DAMAGED = "the file or its archive is damaged: copy or download it again"
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class SkippedFile:
    """A file that was not used: its path (zip entries as ``archive.zip/inner/path``) and why."""

    path: str
    reason: str


def is_image_name(name: str) -> bool:
    """True when ``name`` ends in one of :data:`IMAGE_SUFFIXES` (any case)."""
    return name.lower().endswith(IMAGE_SUFFIXES)


def _hidden(name: str) -> bool:
    return name.startswith("__MACOSX/") or any(part.startswith(".") for part in name.split("/"))


def _outside(name: str) -> bool:
    """A zip entry name that is absolute or climbs out of the archive with '..'."""
    posix = name.replace("\\", "/")
    return posix.startswith("/") or bool(_DRIVE.match(posix)) or ".." in posix.split("/")


def _locate(path: Path) -> tuple[Path | None, str]:
    """(zip file, inner path) for a zip or a path inside one; (None, '') for a folder or a plain file."""
    if path.is_dir():
        return None, ""
    if path.is_file():  # read as a zip: named *.zip, or a zip in disguise not named like an image
        is_zip = path.suffix.lower() == ".zip" or (not is_image_name(path.name) and zipfile.is_zipfile(path))
        return (path, "") if is_zip else (None, "")
    for parent in path.parents:
        if parent.is_file():
            if not zipfile.is_zipfile(parent):
                raise DataError(f"{path}: {parent} is a file, not a folder or a zip.")
            return parent, path.relative_to(parent).as_posix().strip("/")
        if parent.exists():
            break
    raise DataError(f"{path}: no such file or folder.")


class FileSource(AbstractContextManager):
    """Read-only view of a folder, a zip, a folder inside a zip, one file inside a zip, or a plain file.
    ``path``: the folder the names are relative to (``archive.zip/inner`` in a zip; for a single file, the
    folder holding it); ``zip_path``: the zip file or None (``is_zip``); ``single_file``: it holds just the
    file it was opened on; ``skipped``: zip entries below it outside the archive. Use it as a context manager
    (a zip stays open until :meth:`close`); reading from several threads is safe."""

    def __init__(self, path: PathLike):
        given = Path(path).expanduser()
        self.zip_path, inner = _locate(given)
        self.is_zip = self.zip_path is not None
        self.single_file = not self.is_zip and given.is_file()
        self.skipped: tuple[SkippedFile, ...] = ()
        self._zip: zipfile.ZipFile | None = None
        self._files: list[str] = [given.name] if self.single_file else []  # zip or single file: sorted names
        self._folders: set[str] = set()  # zip: every folder path relative to the source
        if not self.is_zip:
            self.prefix, self.path = "", given.parent if self.single_file else given
            return
        try:
            self._zip = zipfile.ZipFile(self.zip_path)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as err:
            raise DataError(f"{self.zip_path}: not a readable zip archive ({err}); the file is damaged or "
                            "not a zip: copy or download it again.") from err
        self._list_zip(given, inner)

    def _list_zip(self, given: Path, inner: str) -> None:
        entries = self._zip.namelist()
        if inner and inner in entries and not inner.endswith("/"):  # one file inside the zip
            self.prefix, _, name = inner.rpartition("/")
            self.path, self.single_file, self._files = given.parent, True, [name]
            return
        self.prefix, self.path = inner, given
        start = inner + "/" if inner else ""
        below = [n for n in entries if n.startswith(start)]
        self.skipped = tuple(SkippedFile(f"{self.zip_path}/{n}", OUTSIDE_ARCHIVE)
                             for n in below if _outside(n))
        below = [n[len(start):] for n in below if not _outside(n) and not _hidden(n)]
        self._files = sorted(n for n in below if n and not n.endswith("/"))
        for n in below:  # every folder above an entry, and folder entries themselves (empty folders)
            parts = n.rstrip("/").split("/")
            self._folders.update("/".join(parts[:i]) for i in range(1, len(parts) + n.endswith("/")))
        if inner and not below:
            tops = sorted({n.split("/", 1)[0] for n in entries if not _hidden(n) and not _outside(n)})
            raise DataError(f"{given}: the zip {self.zip_path} has no entries under '{inner}/'; its "
                            f"top-level entries are {tops[:20]}.")

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def names(self, sub: str = "") -> list[str]:
        """Every non-hidden file below folder ``sub`` (recursively), as posix paths relative to the source, in
        name order (in a folder, the files of a folder before its sub-folders)."""
        start = sub.strip("/") + "/" if sub.strip("/") else ""
        if self.is_zip or self.single_file:
            lo = bisect.bisect_left(self._files, start)
            hi = bisect.bisect_left(self._files, start + "\U0010ffff") if start else len(self._files)
            return self._files[lo:hi]
        out = []
        for dirpath, dirnames, filenames in os.walk(self.path / start):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = Path(dirpath).relative_to(self.path).as_posix()
            out.extend(f if rel == "." else f"{rel}/{f}" for f in sorted(filenames) if not f.startswith("."))
        return out

    def folders(self, sub: str = "") -> list[str]:
        """The names of the non-hidden folders directly inside folder ``sub``, also empty ones, sorted."""
        sub = sub.strip("/")
        if self.is_zip and not self.single_file:
            return sorted(posixpath.basename(f) for f in self._folders if posixpath.dirname(f) == sub)
        top = self.path / sub
        if self.single_file or not top.is_dir():
            return []
        return sorted(e.name for e in os.scandir(top) if e.is_dir() and not _hidden(e.name))

    def exists(self, name: str) -> bool:
        return name in self._files if self.is_zip or self.single_file else (self.path / name).is_file()

    def where(self, name: str) -> str:
        """The path of ``name`` to show a person: ``folder/name`` or ``archive.zip/inner/name``."""
        return f"{self.path.as_posix()}/{name}" if self.is_zip else str(self.path / name)

    def read(self, name: str) -> bytes:
        """The bytes of file ``name``; DataError naming the file when it is missing or cannot be read."""
        try:
            if self._zip is not None:
                return self._zip.read(f"{self.prefix}/{name}" if self.prefix else name)
            return (self.path / name).read_bytes()  # (a closed zip source fails here: not a folder)
        except (KeyError, FileNotFoundError) as err:
            raise DataError(f"{self.where(name)}: file not found{' in the archive' if self.is_zip else ''}; "
                            f"{_DAMAGED}.") from err
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError,
                NotImplementedError) as err:
            raise DataError(f"{self.where(name)}: cannot read it ({type(err).__name__}: {err}); "
                            f"{_DAMAGED}.") from err

    def fingerprint(self, names: Sequence[str]) -> list:
        """Cache-key part: the zip file's path, size and mtime, or those of every listed file of a folder."""
        if self.is_zip:
            return file_fingerprint(self.zip_path)
        stats = [os.stat(self.path / n) for n in names]
        return [str(self.path.resolve()), list(names), [[s.st_size, s.st_mtime_ns] for s in stats]]


@dataclass
class ExpandedPaths(AbstractContextManager):
    """The image files found by :func:`expand_paths`: ``files`` (source, name) in the order of the paths
    given, ``skipped`` with the reason, and the opened ``sources``, closed by :meth:`close` (or ``with``)."""

    files: list[tuple[FileSource, str]] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    sources: list[FileSource] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.files)

    def where(self, i: int) -> str:
        return FileSource.where(*self.files[i])

    def read(self, i: int) -> bytes:
        return FileSource.read(*self.files[i])

    def close(self) -> None:
        for source in self.sources:
            source.close()

    def __exit__(self, *exc) -> None:
        self.close()


def expand_paths(paths: Iterable[PathLike]) -> ExpandedPaths:
    """Paths of files, folders, zips or parts of zips -> the image files to read and the skipped entries. A
    file given by itself is tried as an image whatever its suffix (a zip is opened as a folder); inside
    folders and zips only names with an image suffix are used, the others are skipped (as are missing paths,
    empty folders, unreadable zips and zip entries outside the archive)."""
    out = ExpandedPaths()
    for item in paths:
        path = Path(item).expanduser()
        try:
            source = FileSource(path)
        except DataError as err:
            out.skipped.append(SkippedFile(str(path), str(err).removeprefix(f"{path}: ").rstrip(".")))
            continue
        out.sources.append(source)
        out.skipped += source.skipped
        names = source.names()
        if not names:
            out.skipped.append(SkippedFile(str(path), "empty folder: no files in it"))
        for name in names:
            if source.single_file or is_image_name(name):
                out.files.append((source, name))
            else:
                suffix = posixpath.splitext(name)[1] or "no suffix"
                out.skipped.append(SkippedFile(source.where(name), f"not an image file ({suffix})"))
    return out
