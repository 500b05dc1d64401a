"""The artifact store on a local (or shared, mounted) filesystem.

An artifact is a folder `objects/<sha[:2]>/<sha>/` holding a step output's files, made
read-only: inputs are handed to steps as these very paths (no copy), so a step cannot
alter history.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from pathlib import Path
from typing import BinaryIO

from runs.artifact_files import (
    ArtifactError,
    Manifest,
    folder_files,
    install,
    intact,
    output_manifest,
    remove_tree,
    stage_output,
    tree_manifest,
)


class LocalStore:
    def __init__(self, root: Path):
        self.root = root

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def folder(self, sha256: str) -> Path:
        return self.root / "objects" / sha256[:2] / sha256

    def local_dir(self, sha256: str) -> Path:
        return self.folder(sha256)

    def hold(self, sha256: str) -> contextlib.nullcontext[Path]:
        return contextlib.nullcontext(self.folder(sha256))

    def put(self, source: Path, kind: str, *, leave_if_stored: bool = False) -> Manifest:
        """Store `source` (moved: it is gone after), or with `leave_if_stored`, when the store holds
        its content already, leave it where it is for its caller to remove: moving it in only to
        remove it cost a step's end about half a millisecond on the bench machine's disk."""
        staging = self.root / "staging" / uuid.uuid4().hex
        try:
            # Staged inside the store, so that the final rename stays on one filesystem.
            staging.parent.mkdir(parents=True, exist_ok=True)
            if leave_if_stored:
                # Hashed where it is, then moved as it is (a rename, or a copy across file
                # systems): nothing of the step that wrote it is left to change it.
                manifest = output_manifest(source, kind)
                final = self.folder(manifest.sha256)
                if final.is_dir() and intact(final, manifest.sha256):
                    return manifest
                stage_output(source, kind, staging)
            else:
                stage_output(source, kind, staging)
                manifest = tree_manifest(staging)
            final = self.folder(manifest.sha256)
            if final.exists() and not intact(final, manifest.sha256):
                # Damaged by hand since it was stored: replace it with the good copy just made.
                remove_tree(final)
            install(staging, final)
        except (ArtifactError, OSError) as exc:
            # A half-copied output (a full disk) is no use to anyone: free its space at once.
            with contextlib.suppress(OSError):
                remove_tree(staging)
            if isinstance(exc, ArtifactError):
                raise
            raise ArtifactError(f"artifact store error: {exc.strerror or exc}") from exc
        return manifest

    def intact(self, sha256: str, *, verify_content: bool) -> bool:
        folder = self.folder(sha256)
        if not folder.is_dir():
            return False
        return intact(folder, sha256) if verify_content else True

    def files(self, sha256: str) -> list[str]:
        return folder_files(self.folder(sha256))

    def sizes(self, sha256: str) -> dict[str, int]:
        folder = self.folder(sha256)
        return {rel: (folder / rel).stat().st_size for rel in folder_files(folder)}

    def open(self, sha256: str, rel: str) -> BinaryIO:
        return (self.folder(sha256) / rel).open("rb")

    def remove(self, sha256: str) -> None:
        remove_tree(self.folder(sha256))

    def stored(self) -> dict[str, float]:
        """`sha -> last modified` (epoch seconds) of every object folder, complete or not."""
        objects = self.root / "objects"
        found: dict[str, float] = {}
        if objects.is_dir():
            for shard in objects.iterdir():
                for folder in shard.iterdir():
                    found[folder.name] = folder.stat().st_mtime
        return found

    def clean_staging(self, *, older_than_s: float) -> None:
        staging = self.root / "staging"
        if staging.is_dir():
            for leftover in staging.iterdir():
                if time.time() - leftover.stat().st_mtime > older_than_s:
                    shutil.rmtree(leftover, ignore_errors=True)
