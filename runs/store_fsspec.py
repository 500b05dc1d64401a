"""The artifact store in an object store reached through fsspec (`s3://bucket/prefix`).

Layout under the prefix, as in the local store: `objects/<sha[:2]>/<sha>/<files>`, plus
`objects/<sha[:2]>/<sha>.manifest`, the completion marker, written last. An object
without its marker is not complete: nothing reads or reuses it, and gc removes it.

Steps need local paths: a worker downloads an input once into its cache (checked
against the hash, read-only, renamed into place atomically) and hands out that path. The cache
is kept under a size bound, never evicting what a step uses (runs/artifact_cache.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import fsspec

from runs import artifact_cache
from runs.artifact_files import (
    ArtifactError,
    Entry,
    Manifest,
    force_remove,
    install,
    manifest_of,
    remove_tree,
    stage_output,
    tree_manifest,
)

log = logging.getLogger(__name__)

# Read-ahead of a download streamed to a browser: the memory one download holds.
STREAM_BLOCK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Marker:
    entries: list[Entry]
    etags: dict[str, str]  # path -> the ETag the store gave the upload, where it gives one


class FsspecStore:
    def __init__(self, url: str, options: dict[str, Any], cache: Path, cache_max_bytes: int):
        self.url = url
        # Listings are never cached: another machine may have added or removed objects since.
        # Our own caching of this store is per process (see artifacts.store), not fsspec's.
        self.options = {"use_listings_cache": False, "skip_instance_cache": True, **options}
        self.cache = cache
        self.cache_max_bytes = cache_max_bytes
        self._connection: tuple[Any, str] | None = None  # (filesystem, "bucket/prefix")

    def __repr__(self) -> str:
        return f"FsspecStore({self.url!r})"

    # -- paths ------------------------------------------------------------------------
    def _connect(self) -> tuple[Any, str]:
        if self._connection is None:
            # Made on first use, so that a bad URL or option fails a step with the reason.
            with self._errors("connecting to"):
                self._connection = fsspec.core.url_to_fs(self.url, **self.options)
        return self._connection

    @property
    def fs(self) -> Any:
        return self._connect()[0]

    def _objects(self) -> str:
        return f"{self._connect()[1]}/objects"

    def _object(self, sha256: str) -> str:
        return f"{self._objects()}/{sha256[:2]}/{sha256}"

    def _marker(self, sha256: str) -> str:
        return self._object(sha256) + ".manifest"

    def _cached(self, sha256: str) -> Path:
        return artifact_cache.object_dir(self.cache, sha256)

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except ArtifactError:
            raise
        except Exception as exc:
            # fsspec back ends raise their own types (botocore's, aiohttp's), not only OSError.
            raise ArtifactError(f"artifact store error: {action} {self.url}: {_describe(exc)}") from exc

    # -- storing ------------------------------------------------------------------------
    def put(self, source: Path, kind: str, *, leave_if_stored: bool = False) -> Manifest:
        # `leave_if_stored` (see LocalStore.put): an upload is staged whatever the store holds.
        staging = self.cache / "staging" / uuid.uuid4().hex
        try:
            try:
                stage_output(source, kind, staging)
                manifest = tree_manifest(staging)
            except OSError as exc:
                raise ArtifactError(f"could not stage the output for upload: {exc.strerror or exc}") from exc
            with self._errors("storing an artifact in"):
                if not self.intact(manifest.sha256, verify_content=True):
                    self._upload(staging, manifest)
            # The worker that made it keeps a copy: a next step here needs no download.
            with contextlib.suppress(OSError), artifact_cache.held(self.cache, manifest.sha256) as final:
                install(staging, final)
                artifact_cache.touch(final)
        finally:
            if staging.exists():
                force_remove(staging)
        self._trim()
        return manifest

    def _upload(self, staging: Path, manifest: Manifest) -> None:
        prefix = self._object(manifest.sha256)
        if manifest.entries:
            local = [str(staging / e.path) for e in manifest.entries]
            self.fs.put(local, [f"{prefix}/{e.path}" for e in manifest.entries])
        listed = self._listing(manifest.sha256)
        for entry in manifest.entries:
            info = listed.get(entry.path)
            if info is None or info.get("size") != entry.size:
                raise ArtifactError(f"artifact store error: the upload of {entry.path} to {self.url} is incomplete")
        files = [
            {"path": e.path, "sha256": e.sha256, "size": e.size, "etag": listed[e.path].get("ETag") or ""}
            for e in manifest.entries
        ]
        body = {"sha256": manifest.sha256, "size": manifest.size, "file_count": manifest.file_count, "files": files}
        # Last: from here on the object is complete for every reader.
        self.fs.pipe_file(self._marker(manifest.sha256), json.dumps(body, indent=1).encode())

    def _listing(self, sha256: str) -> dict[str, dict[str, Any]]:
        """`relative path -> info` of what is stored under the object's prefix."""
        prefix = self._object(sha256) + "/"
        found = self.fs.find(prefix, detail=True)
        return {path[len(prefix) :]: info for path, info in found.items() if path.startswith(prefix)}

    def _read_marker(self, sha256: str) -> Marker | None:
        """The object's recorded files; None while it is incomplete (or its marker is not its own)."""
        try:
            raw = self.fs.cat_file(self._marker(sha256))
        except FileNotFoundError:
            return None
        try:
            files = json.loads(raw)["files"]
            entries = [Entry(path=str(f["path"]), sha256=str(f["sha256"]), size=int(f["size"])) for f in files]
            etags = {str(f["path"]): str(f.get("etag") or "") for f in files}
        except (ValueError, KeyError, TypeError):
            return None
        if manifest_of(entries).sha256 != sha256:
            return None
        return Marker(entries=entries, etags=etags)

    # -- reading ------------------------------------------------------------------------
    def intact(self, sha256: str, *, verify_content: bool) -> bool:
        """Complete: the marker exists; with verify_content, every recorded file is there unchanged.

        "Unchanged" is judged from one listing (size, and ETag where the store gives one), not by
        downloading: the store checks its own bytes, and a worker still re-hashes what it downloads.
        """
        try:
            if not verify_content:
                return bool(self.fs.exists(self._marker(sha256)))
            marker = self._read_marker(sha256)
            if marker is None:
                return False
            listed = self._listing(sha256)
        except Exception as exc:
            # Not reusable now; running the step again reports the store's error if it persists.
            log.warning("artifact %s in %s could not be checked: %s", sha256, self.url, _describe(exc))
            return False
        for entry in marker.entries:
            info = listed.get(entry.path)
            if info is None or info.get("size") != entry.size:
                return False
            etag = marker.etags.get(entry.path)
            if etag and info.get("ETag") and info["ETag"] != etag:
                return False
        return True

    def local_dir(self, sha256: str) -> Path:
        """A local read-only copy of the object, downloaded into this machine's cache if not there.

        Nothing holds it afterwards: a later trim may evict it (a step's inputs use hold).
        """
        with artifact_cache.held(self.cache, sha256):
            return self._fetch(sha256)

    @contextlib.contextmanager
    def hold(self, sha256: str) -> Iterator[Path]:
        """local_dir, kept in the cache until the block ends."""
        try:
            with artifact_cache.held(self.cache, sha256):
                yield self._fetch(sha256)
        finally:
            # What running steps kept above the bound may go now (with a bound of 0, all they used).
            self._trim()

    def _fetch(self, sha256: str) -> Path:
        """The object's copy in the cache, downloaded if not there; the caller holds it."""
        final = self._cached(sha256)
        if final.is_dir():
            artifact_cache.touch(final)
            return final
        staging = self.cache / "staging" / uuid.uuid4().hex
        try:
            with self._errors("reading an artifact from"):
                marker = self._read_marker(sha256)
                if marker is None:
                    raise ArtifactError(f"artifact {sha256[:12]} is missing or incomplete in {self.url}")
                staging.mkdir(parents=True)
                local = [staging / e.path for e in marker.entries]
                for path in local:
                    path.parent.mkdir(parents=True, exist_ok=True)
                if local:
                    prefix = self._object(sha256)
                    self.fs.get([f"{prefix}/{e.path}" for e in marker.entries], [str(p) for p in local])
                if tree_manifest(staging).sha256 != sha256:
                    raise ArtifactError(f"artifact {sha256[:12]} in {self.url} no longer matches its hash")
                install(staging, final)
        finally:
            if staging.exists():
                force_remove(staging)
        artifact_cache.touch(final)
        self._trim()
        return final

    def _trim(self) -> None:
        evicted = artifact_cache.trim(self.cache, self.cache_max_bytes)
        if evicted:
            log.info("evicted %d object(s) from the artifact cache %s", len(evicted), self.cache)

    def files(self, sha256: str) -> list[str]:
        with self._errors("reading an artifact from"):
            marker = self._read_marker(sha256)
        if marker is None:
            raise ArtifactError(f"artifact {sha256[:12]} is missing or incomplete in {self.url}")
        return [e.path for e in marker.entries]

    def sizes(self, sha256: str) -> dict[str, int]:
        with self._errors("reading an artifact from"):
            marker = self._read_marker(sha256)
        if marker is None:
            raise ArtifactError(f"artifact {sha256[:12]} is missing or incomplete in {self.url}")
        return {e.path: e.size for e in marker.entries}

    def open(self, sha256: str, rel: str) -> BinaryIO:
        with self._errors("reading an artifact from"):
            return self.fs.open(f"{self._object(sha256)}/{rel}", "rb", block_size=STREAM_BLOCK)

    # -- removing -----------------------------------------------------------------------
    def remove(self, sha256: str) -> None:
        with self._errors("removing an artifact from"):
            # The marker first: an object half removed must not look complete.
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self._marker(sha256))
            prefix = self._object(sha256)
            keys = [f"{prefix}/{rel}" for rel in self._listing(sha256)]
            if keys:
                self.fs.rm(keys)
        remove_tree(self._cached(sha256))

    def stored(self) -> dict[str, float]:
        """`sha -> last modified` (epoch seconds) of every object, complete or not, and stray marker."""
        with self._errors("listing"):
            objects = self._objects() + "/"
            try:
                found = self.fs.find(objects, detail=True)
            except FileNotFoundError:
                return {}
        stored: dict[str, float] = {}
        for path, info in found.items():
            parts = path[len(objects) :].split("/")
            if len(parts) < 2:
                continue
            sha = parts[1].removesuffix(".manifest")
            stored[sha] = max(stored.get(sha, 0.0), _modified(info))
        return stored

    def clean_staging(self, *, older_than_s: float) -> None:
        staging = self.cache / "staging"
        if staging.is_dir():
            for leftover in staging.iterdir():
                if time.time() - leftover.stat().st_mtime > older_than_s:
                    shutil.rmtree(leftover, ignore_errors=True)


def _modified(info: dict[str, Any]) -> float:
    value = info.get("LastModified") or info.get("mtime") or info.get("created")
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    if isinstance(value, int | float):
        return float(value)
    # Unknown age: count it as new, so gc never removes an upload that may be in flight.
    return time.time()


def _describe(exc: BaseException) -> str:
    """The store's own error code and message where there is one (s3fs keeps boto's error as the cause)."""
    cause = exc.__cause__ if getattr(exc.__cause__, "response", None) else exc
    error = (getattr(cause, "response", None) or {}).get("Error") or {}
    if error.get("Code"):
        return f"{error['Code']}: {error.get('Message') or exc}"
    return f"{type(exc).__name__}: {exc}"
