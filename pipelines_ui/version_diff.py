"""What differs between two versions of a pipeline: the changed parts in words, a unified diff of
their YAML, and one of every code file added, removed or changed. Pure but for
`version_file_contents`, which reads the blobs of the files that differ."""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass

from pipelines_ui.concurrent_edits import part_change_text, part_label, spec_change
from pipelines_ui.models import FileBlob, PipelineVersion
from stepwise.spec import yaml_files
from stepwise.spec.model import Pipeline as PipelineSpec


@dataclass(frozen=True)
class ChangedPart:
    label: str
    change: str


@dataclass(frozen=True)
class DiffLine:
    text: str
    kind: str  # "file", "hunk", "added", "removed" or "context": picks the line's colour


def changed_parts(before: PipelineSpec, after: PipelineSpec) -> list[ChangedPart]:
    """Every part that differs, the pipeline's settings first, then inputs, outputs and steps by name."""
    order = {"pipeline": 0, "input": 1, "output": 2, "step": 3}
    parts = sorted(spec_change(before, after).changed, key=lambda p: (order.get(p.partition(":")[0], 4), p))
    return [ChangedPart(label=part_label(p), change=part_change_text(before, after, p)) for p in parts]


def _kind(line: str) -> str:
    if line.startswith(("---", "+++")):
        return "file"
    if line.startswith("@@"):
        return "hunk"
    if line.startswith("+"):
        return "added"
    if line.startswith("-"):
        return "removed"
    return "context"


# A spec file may hold up to STEPWISE_YAML_MAX_BYTES (a long command is a line per line of it):
# past this many lines in all, the YAML diff stops, as a code file's does (CODE_DIFF_MAX_LINES).
YAML_DIFF_MAX_LINES = 2000


def yaml_diff(before: PipelineSpec, after: PipelineSpec, *, before_name: str, after_name: str) -> list[DiffLine]:
    """A unified diff of the two specs' YAML files, file by file, cut after YAML_DIFF_MAX_LINES
    lines (a last line says so); [] when they are the same."""
    old, new = yaml_files(before), yaml_files(after)
    # pipeline.yml first, then the components in the order the newer version lists them.
    paths = list(dict.fromkeys([*new, *old]))
    lines: list[DiffLine] = []
    for path in paths:
        a = old[path].decode("utf-8").splitlines() if path in old else []
        b = new[path].decode("utf-8").splitlines() if path in new else []
        diff = difflib.unified_diff(
            a,
            b,
            fromfile=f"{before_name}/{path}" if path in old else "/dev/null",
            tofile=f"{after_name}/{path}" if path in new else "/dev/null",
            lineterm="",
        )
        room = YAML_DIFF_MAX_LINES - len(lines)
        lines.extend(DiffLine(text=line, kind=_kind(line)) for line in itertools.islice(diff, room + 1))
        if len(lines) > YAML_DIFF_MAX_LINES:
            note = f"… the diff goes on: too long to show here past {YAML_DIFF_MAX_LINES:,} lines"
            lines[YAML_DIFF_MAX_LINES:] = [DiffLine(text=note, kind="hunk")]
            break
    return lines


# Past these, a file's diff is summed up in words: a page must stay readable and light.
CODE_DIFF_MAX_BYTES = 256 * 1024
CODE_DIFF_MAX_LINES = 2000


@dataclass(frozen=True)
class FileDiff:
    path: str
    status: str  # "added", "removed" or "changed"
    lines: list[DiffLine]
    note: str = ""  # why the lines are missing or cut: a binary file, a large one


def _text(data: bytes) -> str | None:
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def code_diff(old: dict[str, bytes], new: dict[str, bytes], *, before_name: str, after_name: str) -> list[FileDiff]:
    """A unified diff per code file that differs (`path -> bytes` of each version), by path."""
    diffs = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path), new.get(path)
        if a == b:
            continue
        status = "added" if a is None else "removed" if b is None else "changed"
        size = max(len(a or b""), len(b or b""))
        a_text, b_text = _text(a or b""), _text(b or b"")
        if a_text is None or b_text is None:
            diffs.append(FileDiff(path, status, [], note=f"binary file, {size:,} bytes"))
            continue
        if size > CODE_DIFF_MAX_BYTES:
            diffs.append(FileDiff(path, status, [], note=f"{size:,} bytes: too large to show here"))
            continue
        diff = difflib.unified_diff(
            a_text.splitlines(),
            b_text.splitlines(),
            fromfile=f"{before_name}/{path}" if a is not None else "/dev/null",
            tofile=f"{after_name}/{path}" if b is not None else "/dev/null",
            lineterm="",
        )
        lines = [DiffLine(text=line, kind=_kind(line)) for line in diff]
        note = ""
        if len(lines) > CODE_DIFF_MAX_LINES:
            note = f"the first {CODE_DIFF_MAX_LINES:,} of {len(lines):,} diff lines"
            lines = lines[:CODE_DIFF_MAX_LINES]
        diffs.append(FileDiff(path, status, lines, note=note))
    return diffs


def version_file_contents(before: PipelineVersion, after: PipelineVersion) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The contents of the files that differ between two versions (unchanged files are not read)."""
    old, new = dict(before.files or {}), dict(after.files or {})
    differing = {path for path in set(old) | set(new) if old.get(path) != new.get(path)}
    shas = {old[p] for p in differing if p in old} | {new[p] for p in differing if p in new}
    blobs = {
        sha: bytes(content)
        for sha, content in FileBlob.objects.filter(sha256__in=shas).values_list("sha256", "content")
    }
    return (
        {p: blobs.get(old[p], b"") for p in differing if p in old},
        {p: blobs.get(new[p], b"") for p in differing if p in new},
    )
