"""A `type: data_transfer` step, run inside the worker rather than as a command.

A datastore's credentials are decrypted here, in the worker, and used through its fsspec
client: no step process ever sees them. Every file is copied with its sha256 taken on the
way and checked again by reading the copy back; a file already at the destination with the
same sha256 is skipped, so a rerun after a failure resumes. The step's log, heartbeat,
cancellation (fencing) and timeout work as for a command step, through its `Attempt`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pipelines_ui.models import Team
from runs import data_assets
from runs.models import Datastore
from stepwise.spec.model import Step
from stepwise.spec.transfer import Location, parse_location

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
# How often a long copy stores its log lines and beats the step's heart (and learns it was canceled).
TICK_S = 1.0


class TransferError(Exception):
    """The transfer cannot go on; the message says which file and why (the step fails with it)."""


class _Stopped(Exception):
    """Canceled, superseded or timed out: the attempt already says why."""


@dataclass
class Tree:
    """A file or folder somewhere fsspec reaches: a step's input or output, or a datastore path."""

    fs: Any
    root: str
    label: str
    # For a local datastore: where nothing may lead out of (a link inside it, say).
    fence: Path | None = None

    def files(self) -> dict[str, str]:
        """{relative path: full path} of the files under root (root itself when it is a file)."""
        try:
            if self.fs.isfile(self.root):
                return {posixpath.basename(self.root.rstrip("/")): self.root}
            if not self.fs.isdir(self.root):
                raise TransferError(f"{self.label} does not exist")
            found = sorted(self.fs.find(self.root, withdirs=False))
        except TransferError:
            raise
        except Exception as exc:  # noqa: BLE001 - botocore and aiohttp errors are not OSErrors
            raise TransferError(f"cannot list {self.label}: {_describe(exc)}") from None
        prefix = self.root.rstrip("/") + "/"
        files = {}
        for full in found:
            if not full.startswith(prefix):
                continue
            if self.fence is not None and not self.inside(full):
                raise TransferError(f"{self.label}: '{full[len(prefix) :]}' leads outside its datastore")
            files[full[len(prefix) :]] = full
        return files

    def inside(self, full: str) -> bool:
        """For a fenced tree: `full`, or where it would be made, is no link and lies inside the fence."""
        assert self.fence is not None
        path = Path(full)
        if path.is_symlink():
            return False
        while not path.exists() and path != path.parent:
            path = path.parent
        return path.resolve().is_relative_to(self.fence)

    def join(self, rel: str) -> str:
        return f"{self.root.rstrip('/')}/{rel}" if rel else self.root


@dataclass
class Tally:
    files: int = 0
    bytes: int = 0
    skipped: int = 0
    skipped_bytes: int = 0


def local_tree(path: str, label: str) -> Tree:
    return Tree(fs=fsspec.filesystem("file"), root=path, label=label)


def datastore_tree(team: Team, text: str, role: str) -> Tree:
    """The tree at `azureml://datastores/NAME/paths/P` or `s3://bucket/key`, through the team's datastore."""
    location = parse_location(text)
    if location is None:
        raise TransferError(f"{role} '{text}' is not a datastore or S3 path")
    datastore = _datastore(team, location)
    rel = location.path
    if location.kind == "s3":
        bucket_root = datastore.root.removeprefix("s3://")
        rel = f"{location.name}/{location.path}".rstrip("/")[len(bucket_root) :].strip("/")
    try:
        fs, root = data_assets.datastore_filesystem(datastore, rel)
    except data_assets.DataError as exc:
        raise TransferError(f"{role}: {exc}") from None
    fence = Path(datastore.root).resolve() if datastore.kind == Datastore.Kind.LOCAL else None
    where = f"'{rel}' in datastore {datastore.name}" if rel else f"the root of datastore {datastore.name}"
    return Tree(fs=fs, root=root, label=f"{role} {where}", fence=fence)


def _datastore(team: Team, location: Location) -> Datastore:
    if location.kind == "datastore":
        found = Datastore.objects.filter(team=team, name=location.name).first()
        if found is None:
            raise TransferError(f"team {team.name} has no datastore named {location.name}")
        return found
    wanted = f"{location.name}/{location.path}".rstrip("/")
    for datastore in Datastore.objects.filter(team=team, kind=Datastore.Kind.S3).order_by("-root"):
        root = datastore.root.removeprefix("s3://").rstrip("/")
        if wanted == root or wanted.startswith(root + "/"):
            return datastore
    raise TransferError(
        f"no S3 datastore of team {team.name} holds s3://{wanted}: add one whose root covers it "
        "(its credentials stay in the datastore)"
    )


def _describe(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text)[:300]


def plan(
    *, step: Step, inputs: dict[str, str], outputs: dict[str, tuple[Path, str]], team: Team
) -> tuple[list[tuple[str, Tree]], Tree, bool]:
    """(sources with their names, destination, whether the destination is one file) for the step's task."""
    settings = step.transfer
    assert settings is not None
    if settings.task == "import_data":
        sources = [("source", datastore_tree(team, settings.source, "source"))]
    else:
        missing = [name for name in step.input_decls if not inputs.get(name)]
        if missing:
            raise TransferError(f"input {missing[0]} has no data bound")
        sources = [(name, local_tree(inputs[name], f"input {name}")) for name in step.input_decls]
    if settings.task == "export_data":
        return sources, datastore_tree(team, settings.sink, "sink"), False
    (name, (path, kind)) = next(iter(outputs.items()))
    if kind == "uri_file":
        return sources, local_tree(str(path), f"output {name}"), True
    return sources, local_tree(str(path), f"output {name}"), False


class Transfer:
    """One transfer step's copy: files in order, each hashed, written, read back and compared."""

    def __init__(self, *, attempt, step: Step, timeout_s: int | None, say: Callable[[list[str]], None]):
        self.attempt = attempt
        self.step = step
        self.timeout_s = timeout_s
        self.say = say
        self.started = time.monotonic()
        self.last_tick = self.started
        self.tally = Tally()

    def tick(self) -> None:
        now = time.monotonic()
        if now - self.last_tick < TICK_S:
            return
        self.last_tick = now
        if self.attempt is not None and not self.attempt.flush(force=True):
            raise _Stopped
        if self.timeout_s and now - self.started > self.timeout_s:
            self.attempt.stop_reason = f"timeout: the step ran longer than {self.timeout_s} s"
            raise _Stopped

    def sha256(self, tree: Tree, path: str) -> str:
        digest = hashlib.sha256()
        with tree.fs.open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                self.tick()
        return digest.hexdigest()

    def copy(self, sources: list[tuple[str, Tree]], dest: Tree, *, single_file: bool, mode: str) -> Tally:
        pairs: list[tuple[Tree, str, str]] = []
        for _name, source in sources:
            for rel, full in source.files().items():
                pairs.append((source, full, rel))
        if single_file:
            if len(pairs) != 1:
                raise TransferError(f"{dest.label} is a uri_file, but the sources hold {len(pairs)} files")
            source, full, _rel = pairs[0]
            pairs = [(source, full, "")]
        self.say([f"[transfer] {len(pairs)} file(s) to {dest.label}"])
        written: dict[str, str] = {}
        for source, full, rel in pairs:
            self.copy_one(source, full, dest, rel, mode=mode, written=written)
        return self.tally

    def copy_one(self, source: Tree, full: str, dest: Tree, rel: str, *, mode: str, written: dict[str, str]) -> None:
        target = dest.join(rel)
        shown = rel or posixpath.basename(target)
        if dest.fence is not None and not dest.inside(target):
            raise TransferError(f"{dest.label}: '{shown}' would be written outside its datastore")
        try:
            present = dest.fs.isfile(target)
            expected = self.sha256(source, full) if present else None
            if present:
                there = self.sha256(dest, target)
                if there == expected:
                    size = dest.fs.size(target)
                    self.tally.skipped += 1
                    self.tally.skipped_bytes += size
                    written[shown] = there
                    self.say([f"[transfer] skipped {shown}: already there with sha256 {there[:12]}"])
                    return
                if mode == "fail_if_conflict":
                    where = f"another input wrote {shown}" if shown in written else f"{shown} is already there"
                    raise TransferError(f"conflict: {where} with other content (data_copy_mode: fail_if_conflict)")
            digest, size = self._write(source, full, dest, target)
            if expected is not None and digest != expected:
                raise TransferError(f"{source.label}: '{shown}' changed while it was copied")
            check = self.sha256(dest, target)
        except (TransferError, _Stopped):
            raise
        except FileNotFoundError:
            raise TransferError(f"{source.label}: '{shown}' disappeared before it was copied") from None
        except Exception as exc:  # noqa: BLE001 - botocore and aiohttp errors are not OSErrors
            raise TransferError(f"cannot copy '{shown}' to {dest.label}: {_describe(exc)}") from None
        if check != digest:
            _remove(dest, target)
            raise TransferError(
                f"checksum mismatch for '{shown}' in {dest.label}: copied sha256 {digest}, read back {check}"
            )
        written[shown] = digest
        self.tally.files += 1
        self.tally.bytes += size
        self.say([f"[transfer] copied {shown} ({size} bytes, sha256 {digest[:12]})"])

    def _write(self, source: Tree, full: str, dest: Tree, target: str) -> tuple[str, int]:
        if isinstance(dest.fs, LocalFileSystem):
            dest.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        with source.fs.open(full, "rb") as reader, dest.fs.open(target, "wb") as writer:
            while chunk := reader.read(CHUNK):
                digest.update(chunk)
                writer.write(chunk)
                size += len(chunk)
                self.tick()
        if hasattr(dest.fs, "invalidate_cache"):
            dest.fs.invalidate_cache(target)
        return digest.hexdigest(), size


def _remove(tree: Tree, path: str) -> None:
    try:
        tree.fs.rm(path)
    except Exception:  # noqa: BLE001 - the mismatch is what the step reports
        log.warning("could not remove the bad copy %s of %s", path, tree.label)


def run(attempt, step: Step, *, team: Team) -> int:
    """Run the step's transfer in this worker; 0 when every file is there and verified, else 1
    (with the attempt's stop_reason saying why). The metrics go through the step's metrics file."""
    prepared = attempt.prepared
    settings = step.transfer
    assert settings is not None
    transfer = Transfer(attempt=attempt, step=step, timeout_s=attempt.step_run.timeout_s, say=attempt.add_lines)
    attempt.add_lines([f"[transfer] {settings.task} in the worker (not as a command)"])
    try:
        sources, dest, single = plan(step=step, inputs=prepared.data_inputs, outputs=prepared.outputs, team=team)
        mode = settings.data_copy_mode if settings.task == "copy_data" else "merge_with_overwrite"
        tally = transfer.copy(sources, dest, single_file=single, mode=mode)
    except _Stopped:
        return 1
    except TransferError as exc:
        attempt.add_lines([f"[transfer] failed: {exc}"])
        attempt.stop_reason = f"data transfer failed: {exc}"
        return 1
    finally:
        _write_metrics(prepared.metrics_file, transfer.tally)
        attempt.read_metrics()
    attempt.add_lines(
        [
            f"[transfer] copied {tally.files} file(s), {tally.bytes} bytes; skipped {tally.skipped} file(s) "
            f"already there with the same sha256 ({tally.skipped_bytes} bytes)"
        ]
    )
    return 0


def _write_metrics(path: Path | None, tally: Tally) -> None:
    if path is None:
        return
    records = [
        {"name": "transfer_files", "value": tally.files},
        {"name": "transfer_bytes", "value": tally.bytes},
        {"name": "transfer_files_skipped", "value": tally.skipped},
        {"name": "transfer_bytes_skipped", "value": tally.skipped_bytes},
    ]
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)
