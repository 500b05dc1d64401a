"""A host's cache of a remote store's objects, kept under a size bound (STEPWISE_ARTIFACTS_CACHE_MAX_BYTES).

Under the cache folder: `objects/<sha[:2]>/<sha>/`, the read-only copies the store renames into
place; `locks/<sha[:2]>/<sha>`, an empty lock file per object; `staging/`. Every worker process
of the host may share the folder, which must be on a local disk.

A use sets the object folder's mtime, so "least recently used" means the same to every process.
A user takes a shared flock on the object's lock file before it looks for the object and keeps
it while its step runs; eviction tries the lock exclusively, without waiting, and passes over an
object it cannot lock. flock rather than lease files holding a pid: the kernel drops the lock
when its holder dies, however it dies, so there is no stale lease to judge and no pid reuse to
fear. flock rather than fcntl record locks: a flock belongs to the open file, so two opens in one
process exclude each other too, and closing another descriptor of the file does not drop it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from runs.artifact_files import remove_tree

log = logging.getLogger(__name__)


def object_dir(root: Path, sha256: str) -> Path:
    return root / "objects" / sha256[:2] / sha256


def _lock_file(root: Path, sha256: str) -> Path:
    return root / "locks" / sha256[:2] / sha256


def _lock(root: Path, sha256: str, operation: int) -> int:
    """A descriptor holding the object's lock; BlockingIOError with LOCK_NB when another holds it."""
    path = _lock_file(root, sha256)
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, operation)
            # Eviction unlinks the lock file while it holds it. A lock on an unlinked file guards
            # nothing (the next user creates a new one), so ours must still be the file at the path.
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


@contextlib.contextmanager
def held(root: Path, sha256: str) -> Iterator[Path]:
    """The object's folder, there or not yet: no eviction removes it before the block ends."""
    fd = _lock(root, sha256, fcntl.LOCK_SH)
    try:
        yield object_dir(root, sha256)
    finally:
        os.close(fd)


def touch(folder: Path) -> None:
    """Record a use. An explicit time: the kernel's own file timestamps are only as fine as a clock tick."""
    now = time.time_ns()
    with contextlib.suppress(OSError):
        os.utime(folder, ns=(now, now))


def evict(root: Path, sha256: str) -> bool:
    """Remove the object's copy unless a user holds it; True when it is gone."""
    try:
        fd = _lock(root, sha256, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    trash = root / "staging" / f"evicted-{uuid.uuid4().hex}"
    try:
        folder = object_dir(root, sha256)
        if folder.is_dir():
            # Out of the way in one rename: a removal cut short must leave no partial copy where
            # readers trust what they find. Moving a folder to another parent rewrites its `..`,
            # which takes write permission on it.
            os.chmod(folder, stat.S_IRWXU)
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.rename(folder, trash)
        os.unlink(_lock_file(root, sha256))
    finally:
        os.close(fd)
    remove_tree(trash)
    return True


def _size(folder: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def trim(root: Path, max_bytes: int) -> list[str]:
    """Evict the least recently used objects until the cache holds at most max_bytes; their hashes.

    Objects in use are passed over: the cache stays above the bound while running steps need more.
    Walking the cache each time keeps no index that could disagree with the files.
    """
    found: list[tuple[int, str, int]] = []  # (last use, sha, bytes)
    for folder in (root / "objects").glob("*/*"):
        try:
            found.append((folder.stat().st_mtime_ns, folder.name, _size(folder)))
        except OSError:
            continue  # evicted by another process meanwhile
    total = sum(size for _, _, size in found)
    evicted = []
    for _, sha, size in sorted(found):
        if total <= max_bytes:
            break
        try:
            gone = evict(root, sha)
        except OSError as exc:
            # Not fatal to the step that triggered the trim; the next trim tries again.
            log.warning("could not evict %s from the artifact cache %s: %s", sha, root, exc)
            continue
        if gone:
            total -= size
            evicted.append(sha)
    return evicted
