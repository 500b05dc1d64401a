"""What differs between two versions of a pipeline: the changed parts in words, and a unified
diff of their YAML. Pure: specs in, plain data out."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from pipelines_ui.concurrent_edits import part_change_text, part_label, spec_change
from pipelines_ui.spec import yaml_files
from pipelines_ui.spec.model import Pipeline as PipelineSpec


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


def yaml_diff(before: PipelineSpec, after: PipelineSpec, *, before_name: str, after_name: str) -> list[DiffLine]:
    """A unified diff of the two specs' YAML files, file by file; [] when they are the same."""
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
        lines.extend(DiffLine(text=line, kind=_kind(line)) for line in diff)
    return lines
