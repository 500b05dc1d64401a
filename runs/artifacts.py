"""The content-addressed artifact store: where step outputs go and step inputs come from.

`STEPWISE_ARTIFACTS` picks the store: a local (or shared, mounted) folder (runs/store_local.py),
or a URL fsspec understands such as `s3://bucket/prefix` (runs/store_fsspec.py), with
`STEPWISE_ARTIFACTS_OPTIONS` as its storage options. Callers use the functions here and
never learn which store it is; a step is always handed local paths.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from pathlib import Path
from typing import BinaryIO, Protocol

from django.conf import settings

from runs import rows
from runs.artifact_files import ArtifactError, Manifest
from runs.models import Artifact
from runs.store_fsspec import FsspecStore
from runs.store_local import LocalStore


class Store(Protocol):
    def put(self, source: Path, kind: str) -> Manifest:
        """Take a finished step's output (moved, not copied), deduplicated by content; ArtifactError with the reason."""

    def local_dir(self, sha256: str) -> Path:
        """A local read-only folder holding the object's files (a remote store downloads it first)."""

    def hold(self, sha256: str) -> contextlib.AbstractContextManager[Path]:
        """local_dir, which a remote store's cache keeps until the block ends."""

    def intact(self, sha256: str, *, verify_content: bool) -> bool: ...

    def files(self, sha256: str) -> list[str]:
        """The object's relative file paths, in manifest order; ArtifactError or OSError when it is missing."""

    def open(self, sha256: str, rel: str) -> BinaryIO: ...

    def remove(self, sha256: str) -> None: ...

    def stored(self) -> dict[str, float]:
        """`sha -> last modified` of every object in the store, complete or not, for gc."""

    def clean_staging(self, *, older_than_s: float) -> None: ...


def store() -> Store:
    return _store(
        str(settings.STEPWISE_ARTIFACTS),
        json.dumps(settings.STEPWISE_ARTIFACTS_OPTIONS, sort_keys=True),
        str(settings.STEPWISE_ARTIFACTS_CACHE),
        settings.STEPWISE_ARTIFACTS_CACHE_MAX_BYTES,
        os.getpid(),
    )


@functools.lru_cache(maxsize=8)
def _store(url: str, options: str, cache: str, cache_max_bytes: int, pid: int) -> Store:
    # Keyed by pid: an fsspec filesystem's event loop is not usable in a forked child.
    if "://" not in url:
        return LocalStore(Path(url))
    return FsspecStore(url, json.loads(options), Path(cache), cache_max_bytes)


def artifact_dir(sha256: str) -> Path:
    """The object's folder in a local store (a remote store has none: use artifact_path)."""
    current = store()
    if not isinstance(current, LocalStore):
        raise ArtifactError(f"artifact store {settings.STEPWISE_ARTIFACTS} is not a local folder")
    return current.folder(sha256)


def artifact_path(artifact: Artifact, output_name: str = "", *, held: contextlib.ExitStack | None = None) -> Path:
    """The local path a step sees: the folder, or for uri_file the one file inside it.

    With `held`, a remote store's cache keeps the copy until that stack closes.
    """
    current = store()
    folder = current.local_dir(artifact.sha256) if held is None else held.enter_context(current.hold(artifact.sha256))
    if artifact.kind == Artifact.Kind.FILE:
        files = [p for p in folder.iterdir() if p.is_file()]
        return files[0] if files else folder / (output_name or "data")
    return folder


def store_output(source: Path, kind: str) -> Artifact:
    """Move a finished step's output into the store and register it (see store_files)."""
    return register(store_files(source, kind), kind)


def register(manifest: Manifest, kind: str) -> Artifact:
    """The database row of stored files; the executor creates it with the step's outputs, atomically."""
    found = rows.select(Artifact, {"sha256": manifest.sha256})  # on every step's end: runs/rows.py
    if found:
        return found[0]
    artifact, _ = Artifact.objects.get_or_create(
        sha256=manifest.sha256,
        defaults={"kind": kind, "size": manifest.size, "file_count": manifest.file_count},
    )
    return artifact


def store_files(source: Path, kind: str, *, leave_if_stored: bool = False) -> Manifest:
    """Move a finished step's output into the store, deduplicated by content; no database write.

    For uri_file, `source` is the file; it is stored inside a folder under its own name.
    `leave_if_stored`: the caller removes `source` itself, so content the store holds already
    may be left where it is (a local store does). Raises ArtifactError with the reason (missing
    file, disk full, permission denied, the object store's error).
    """
    return store().put(source, kind, leave_if_stored=leave_if_stored)


def artifact_intact(artifact: Artifact, *, verify_content: bool = False) -> bool:
    return store().intact(artifact.sha256, verify_content=verify_content)


def stored_files(artifact: Artifact) -> list[str]:
    """The artifact's relative file paths; ArtifactError or OSError when it is gone from the store."""
    return store().files(artifact.sha256)


def stored_file_sizes(artifact: Artifact) -> dict[str, int]:
    """{relative path: size} of the artifact's files, from the store's record (no download)."""
    return store().sizes(artifact.sha256)


def open_stored_file(artifact: Artifact, rel: str) -> BinaryIO:
    """One of stored_files(artifact), opened for reading straight from the store."""
    return store().open(artifact.sha256, rel)


def remove_artifact_files(artifact: Artifact) -> None:
    store().remove(artifact.sha256)
