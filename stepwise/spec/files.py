"""Reading code folders and local data into `Pipeline.files`, within a byte budget.

Uploaded pipelines are extracted and read on the server, so the reader refuses anything
that would reach outside what the user sent: paths outside the pipeline's root folder and
symlinks out of the folder being read. Non-regular files (FIFOs, devices) are skipped, as
reading one could block forever.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

SKIP_DIRS = frozenset({"__pycache__", ".git", ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache"})
MAX_FILES = 10_000


class FilesError(Exception):
    """A folder or file could not be read into the pipeline; the message says why."""


class Budget:
    """Total bytes (and files) read for one pipeline, shared by every folder."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self.count = 0

    def take(self, size: int) -> None:
        self.used += size
        self.count += 1
        if self.used > self.max_bytes:
            raise FilesError(f"code and data files exceed {self.max_bytes} bytes in total")
        if self.count > MAX_FILES:
            raise FilesError(f"more than {MAX_FILES} code and data files")


def within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def resolve_local(base_dir: Path, ref: str, root: Path) -> Path:
    """`ref` (relative to base_dir, or absolute) as a real path inside root, or FilesError."""
    ref = ref.removeprefix("file:")
    path = (base_dir / ref).resolve()
    if not within(path, root.resolve()):
        # Never the folder itself: on the server it is a temporary upload folder.
        raise FilesError(f"'{ref}' is outside the pipeline folder (the folder of its YAML file)")
    if not path.exists():
        raise FilesError(f"'{ref}' does not exist")
    return path


def _read_file(path: Path, budget: Budget) -> bytes:
    size = path.stat().st_size
    budget.take(size)
    with path.open("rb") as fh:
        # Never more than was counted, even if the file grows while we read it.
        return fh.read(size)


def read_file_into(path: Path, *, prefix: str, budget: Budget) -> dict[str, bytes]:
    """One regular file as `{prefix}/{name}`."""
    if not path.is_file():
        raise FilesError(f"'{path.name}' is not a regular file")
    try:
        return {f"{prefix}/{path.name}": _read_file(path, budget)}
    except OSError as exc:
        raise FilesError(f"cannot read '{path.name}': {exc.strerror or exc}")


def read_folder(folder: Path, *, prefix: str, budget: Budget) -> dict[str, bytes]:
    """Every regular file under `folder` as `{prefix}/{relpath}`; symlinks may not leave the folder."""
    real_root = folder.resolve()
    files: dict[str, bytes] = {}
    visited: set[Path] = {real_root}
    pending: list[tuple[Path, PurePosixPath]] = [(real_root, PurePosixPath())]
    while pending:
        directory, rel = pending.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise FilesError(f"cannot list '{rel or '.'}': {exc.strerror or exc}")
        for entry in entries:
            rel_path = rel / entry.name
            try:
                if entry.is_symlink():
                    target = Path(entry.path).resolve()
                    if not within(target, real_root):
                        raise FilesError(f"symlink '{rel_path}' points outside the folder")
                    mode = target.stat().st_mode
                else:
                    target = Path(entry.path)
                    mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    if entry.name in SKIP_DIRS or target in visited:
                        continue
                    visited.add(target)
                    pending.append((target, rel_path))
                elif stat.S_ISREG(mode):
                    files[f"{prefix}/{rel_path}"] = _read_file(target, budget)
            except OSError as exc:
                raise FilesError(f"cannot read '{rel_path}': {exc.strerror or exc}")
    return files


def safe_key(key: str) -> bool:
    """Whether a files key is a plain relative POSIX path that cannot escape a destination folder."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        return False
    return all(part not in ("", ".", "..") for part in key.split("/"))
