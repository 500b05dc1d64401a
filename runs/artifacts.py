"""The content-addressed artifact store on the local (or shared) filesystem.

An artifact is a directory `objects/<sha[:2]>/<sha>/` holding a step output's files;
its sha256 is taken over the manifest (relative path, file sha256, size), so equal
outputs are stored once whichever run made them. Files are made read-only: inputs
are handed to steps as these very paths (no copy), so a step cannot alter history.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from runs.models import Artifact

CHUNK = 1024 * 1024


class ArtifactError(Exception):
    pass


@dataclass(frozen=True)
class Manifest:
    sha256: str
    size: int
    file_count: int


def store_root() -> Path:
    root = settings.STEPWISE_ARTIFACTS
    if "://" in str(root):
        raise ArtifactError(f"artifact store {root} is not a local path; only local stores are supported so far")
    return Path(root)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_manifest(root: Path) -> Manifest:
    """Hash a folder by its sorted (path, sha256, size) entries; symlinks are refused."""
    entries = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink():
                raise ArtifactError(f"output contains a symbolic link: {path.relative_to(root)}")
            size = path.stat().st_size
            rel = path.relative_to(root).as_posix()
            entries.append(f"{rel}\0{file_sha256(path)}\0{size}\n")
            total += size
    digest = hashlib.sha256("".join(entries).encode()).hexdigest()
    return Manifest(sha256=digest, size=total, file_count=len(entries))


def artifact_dir(sha256: str) -> Path:
    return store_root() / "objects" / sha256[:2] / sha256


def artifact_path(artifact: Artifact, output_name: str = "") -> Path:
    """The path a step sees: the folder, or for uri_file the one file inside it."""
    folder = artifact_dir(artifact.sha256)
    if artifact.kind == Artifact.Kind.FILE:
        files = [p for p in folder.iterdir() if p.is_file()]
        return files[0] if files else folder / (output_name or "data")
    return folder


def _make_read_only(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            os.chmod(Path(dirpath) / name, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        os.chmod(dirpath, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)


def store_output(source: Path, kind: str) -> Artifact:
    """Move a finished step's output into the store and register it (see store_files)."""
    return register(store_files(source, kind), kind)


def register(manifest: Manifest, kind: str) -> Artifact:
    """The database row of stored files; the executor creates it with the step's outputs, atomically."""
    artifact, _ = Artifact.objects.get_or_create(
        sha256=manifest.sha256,
        defaults={"kind": kind, "size": manifest.size, "file_count": manifest.file_count},
    )
    return artifact


def store_files(source: Path, kind: str) -> Manifest:
    """Move a finished step's output into the store, deduplicated by content; no database write.

    For uri_file, `source` is the file; it is stored inside a folder under its own name.
    Raises ArtifactError with the reason (missing file, disk full, permission denied).
    """
    try:
        staging = store_root() / "staging" / uuid.uuid4().hex
        staging.mkdir(parents=True)
        if kind == Artifact.Kind.FILE:
            if not source.is_file():
                raise ArtifactError(f"the step did not write its output file {source.name}")
            shutil.move(str(source), staging / source.name)
        else:
            if not source.is_dir():
                raise ArtifactError(f"output folder {source.name} is missing")
            shutil.rmtree(staging)
            shutil.move(str(source), staging)
        manifest = tree_manifest(staging)
        final = artifact_dir(manifest.sha256)
        if final.exists() and not _intact(final, manifest.sha256):
            # Damaged by hand since it was stored: replace it with the good copy just made.
            remove_tree(final)
        if final.exists():
            _force_remove(staging)
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            _make_read_only(staging)
            try:
                os.rename(staging, final)
            except OSError:
                # Another worker stored the same content at the same moment: theirs wins.
                if not final.exists():
                    raise
                _force_remove(staging)
    except ArtifactError:
        raise
    except OSError as exc:
        raise ArtifactError(f"artifact store error: {exc.strerror or exc}") from exc
    return manifest


def _intact(folder: Path, sha256: str) -> bool:
    try:
        return tree_manifest(folder).sha256 == sha256
    except (OSError, ArtifactError):
        return False


def artifact_intact(artifact: Artifact, *, verify_content: bool = False) -> bool:
    folder = artifact_dir(artifact.sha256)
    if not folder.is_dir():
        return False
    return _intact(folder, artifact.sha256) if verify_content else True


def _force_remove(path: Path) -> None:
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
        _force_remove(folder)


def remove_artifact_files(artifact: Artifact) -> None:
    remove_tree(artifact_dir(artifact.sha256))
