"""Artifact files on a local disk: hashing, staging and read-only folders, for every store.

An artifact's sha256 is taken over its manifest (relative path, file sha256, size), so
equal outputs are stored once whichever run made them, and a copy anywhere (the store,
a worker's cache) can be checked against the hash it is filed under.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 1024 * 1024
FILE_KIND = "uri_file"


class ArtifactError(Exception):
    pass


@dataclass(frozen=True)
class Entry:
    path: str  # relative, POSIX separators
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    sha256: str
    size: int
    file_count: int
    # The files themselves: a remote store writes them into its completion marker.
    entries: tuple[Entry, ...] = field(default=(), compare=False, repr=False)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_of(entries: list[Entry]) -> Manifest:
    """The manifest of entries sorted as tree_manifest walks them."""
    text = "".join(f"{e.path}\0{e.sha256}\0{e.size}\n" for e in entries)
    return Manifest(
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        size=sum(e.size for e in entries),
        file_count=len(entries),
        entries=tuple(entries),
    )


def tree_manifest(root: Path) -> Manifest:
    """Hash a folder by its sorted (path, sha256, size) entries; symlinks, FIFOs and other non-files are refused."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        # os.walk lists a link to a folder among the folders (and does not go into it): refused too.
        for name in sorted(dirnames):
            if (Path(dirpath) / name).is_symlink():
                raise ArtifactError(f"output contains a symbolic link: {(Path(dirpath) / name).relative_to(root)}")
        for name in sorted(filenames):
            path = Path(dirpath) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise ArtifactError(f"output contains a symbolic link: {path.relative_to(root)}")
            # A FIFO (any user can make one) would hang this process on its open, waiting for a
            # writer that never comes once the step has ended; a socket or device is no data either.
            if not stat.S_ISREG(mode):
                raise ArtifactError(f"output contains what is not a regular file: {path.relative_to(root)}")
            rel = path.relative_to(root).as_posix()
            entries.append(Entry(path=rel, sha256=file_sha256(path), size=path.stat().st_size))
    return manifest_of(entries)


def intact(folder: Path, sha256: str) -> bool:
    try:
        return tree_manifest(folder).sha256 == sha256
    except (OSError, ArtifactError):
        return False


def _check_output(source: Path, kind: str) -> None:
    # A step writes in its outputs folder: it may have replaced its output, or that folder itself, by
    # a link to a folder of the worker's (var/, say), which this process, outside the sandbox, would
    # then move into the store (and make read-only), to be downloaded from the run page.
    if source.is_symlink() or source.parent.is_symlink():
        raise ArtifactError(f"output {source.name} is or lies in a symbolic link")
    if kind == FILE_KIND:
        if not source.is_file():
            raise ArtifactError(f"the step did not write its output file {source.name}")
    elif not source.is_dir():
        raise ArtifactError(f"output folder {source.name} is missing")


def output_manifest(source: Path, kind: str) -> Manifest:
    """The manifest `source` will have once staged (`stage_output`), read where it is."""
    _check_output(source, kind)
    if kind != FILE_KIND:
        return tree_manifest(source)
    if not stat.S_ISREG(source.lstat().st_mode):
        raise ArtifactError(f"output {source.name} is not a regular file")
    return manifest_of([Entry(path=source.name, sha256=file_sha256(source), size=source.stat().st_size)])


def stage_output(source: Path, kind: str, staging: Path) -> None:
    """Move a finished step's output to `staging` (which must not exist yet).

    For uri_file, `source` is the file; it is kept inside the folder under its own name.
    """
    _check_output(source, kind)
    if kind == FILE_KIND:
        staging.mkdir(parents=True)
        shutil.move(str(source), staging / source.name)
    else:
        staging.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), staging)


def make_read_only(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            os.chmod(Path(dirpath) / name, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        os.chmod(dirpath, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)


def install(staging: Path, final: Path) -> None:
    """Make a checked staging folder read-only and rename it into place, or drop it if already there."""
    if final.exists():
        force_remove(staging)
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    make_read_only(staging)
    try:
        os.rename(staging, final)
    except OSError:
        # Another worker put the same content there at the same moment: theirs wins.
        if not final.exists():
            raise
        force_remove(staging)


def force_remove(path: Path) -> None:
    def make_writable(func, target, _exc):
        os.chmod(target, stat.S_IRWXU)
        os.chmod(os.path.dirname(target), stat.S_IRWXU)
        func(target)

    # `onexc` is Python 3.12+; `onerror` (same three arguments here) works on 3.11 as well.
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=make_writable)
    else:
        shutil.rmtree(path, onerror=make_writable)


def remove_tree(folder: Path) -> None:
    """Remove a stored (read-only) folder."""
    if folder.exists():
        for dirpath, _dirs, _files in os.walk(folder):
            os.chmod(dirpath, stat.S_IRWXU)
        force_remove(folder)


def folder_files(folder: Path) -> list[str]:
    """Relative paths of the regular files under a folder, in manifest order; OSError when it is gone."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing")
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                files.append(path.relative_to(folder).as_posix())
    return files
