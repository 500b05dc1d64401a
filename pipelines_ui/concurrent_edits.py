"""Three-way merge of pipeline specs, for edits saved while others saved (pure functions).

Every editing form carries the number of the version it was opened on: its base. When
others saved since, the save is a three-way merge at the grain of *parts*: the
pipeline's own fields, each pipeline input, each pipeline output, each step with its
files. It goes through when the two sides changed different parts and neither side's
new wiring leans on a part whose interface (a step's outputs, an input's or output's
type, its very existence) the other side changed; otherwise it is a conflict, and
nothing is saved (`services.pipeline_edit`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from stepwise.spec.model import JobOutput, ParentInput, ParentOutputRef, Step
from stepwise.spec.model import Pipeline as PipelineSpec

PIPELINE_PART = "pipeline"
_MISSING = object()

# How a step's fields read in a sentence ("changed its command, code").
_STEP_FIELD_WORDS = {
    "name": "name",
    "command": "command",
    "display_name": "display name",
    "description": "description",
    "component_name": "component",
    "component_version": "component",
    "input_decls": "inputs",
    "inputs": "inputs",
    "output_decls": "outputs",
    "outputs": "outputs",
    "has_code": "code",
    "environment": "environment",
    "compute": "compute",
    "environment_variables": "environment variables",
    "timeout_s": "timeout",
    "max_retries": "retries",
    "is_deterministic": "reuse setting",
}


def _file_part(key: str) -> str:
    """The part a file belongs to: `code/<step>/…` and `data/<step>.<input>/…` to the step,
    `data/<input>/…` to the pipeline input."""
    head, _, rest = key.partition("/")
    first = rest.partition("/")[0]
    if head == "code":
        return f"step:{first}"
    if head == "data":
        job, dot, _input = first.partition(".")
        return f"step:{job}" if dot else f"input:{first}"
    return PIPELINE_PART


def _part_files(spec: PipelineSpec) -> dict[str, dict[str, object]]:
    files: dict[str, dict[str, object]] = {}
    for key, data in spec.files.items():
        files.setdefault(_file_part(key), {})[key] = data
    return files


def spec_parts(spec: PipelineSpec) -> dict[str, object]:
    """`spec` cut into the parts that merge independently: part key -> a value compared with ==.

    Keys: `pipeline`, `input:<name>`, `output:<name>`, `step:<name>`. File values are only
    compared, so a version's `{key: sha256}` map stands in for the bytes.
    """
    files = _part_files(spec)
    parts: dict[str, object] = {
        PIPELINE_PART: (
            spec.name,
            spec.display_name,
            spec.description,
            spec.experiment_name,
            spec.tags,
            spec.settings,
            files.get(PIPELINE_PART, {}),
            # Pipeline components change only with their steps' bindings: one part, taken whole.
            spec.groups,
        )
    }
    for name, decl in spec.inputs.items():
        parts[f"input:{name}"] = (decl, files.get(f"input:{name}", {}))
    for name, out in spec.outputs.items():
        parts[f"output:{name}"] = out
    for name, step in spec.jobs.items():
        parts[f"step:{name}"] = (step, files.get(f"step:{name}", {}))
    return parts


def _interface(spec: PipelineSpec, part: str) -> object:
    """What bindings elsewhere rely on: a step's outputs, an input's or output's type; None when absent."""
    kind, _, name = part.partition(":")
    if kind == "step":
        step = spec.jobs.get(name)
        return None if step is None else {out: decl.type for out, decl in step.output_decls.items()}
    if kind == "input":
        decl = spec.inputs.get(name)
        return None if decl is None else decl.type
    if kind == "output":
        out = spec.outputs.get(name)
        return None if out is None else out.type
    return None


def _binding_part(binding) -> str | None:
    if isinstance(binding, JobOutput):
        return f"step:{binding.job}"
    if isinstance(binding, ParentInput):
        return f"input:{binding.name}"
    if isinstance(binding, ParentOutputRef):
        return f"output:{binding.name}"
    return None


def _new_wiring(before: Step | None, after: Step) -> set[str]:
    """The parts that `after`'s bindings lean on where `before` did not bind the same way."""
    old_inputs = before.inputs if before is not None else {}
    old_outputs = before.outputs if before is not None else {}
    parts = {_binding_part(b) for k, b in after.inputs.items() if old_inputs.get(k, _MISSING) != b}
    parts |= {_binding_part(r) for k, r in after.outputs.items() if old_outputs.get(k, _MISSING) != r}
    return {p for p in parts if p is not None}


@dataclass(frozen=True)
class SpecChange:
    """What one save did to a spec."""

    changed: frozenset[str]  # parts that differ
    interface: frozenset[str]  # changed parts whose interface differs (see `_interface`)
    wiring: frozenset[str]  # parts that the changed steps' new bindings lean on


def spec_change(before: PipelineSpec, after: PipelineSpec) -> SpecChange:
    a, b = spec_parts(before), spec_parts(after)
    changed = frozenset(k for k in a.keys() | b.keys() if a.get(k, _MISSING) != b.get(k, _MISSING))
    interface = frozenset(k for k in changed if _interface(before, k) != _interface(after, k))
    wiring: set[str] = set()
    for key in changed:
        kind, _, name = key.partition(":")
        if kind == "step" and name in after.jobs:
            wiring |= _new_wiring(before.jobs.get(name), after.jobs[name])
    return SpecChange(changed=changed, interface=interface, wiring=frozenset(wiring))


def spec_conflicts(*, base: PipelineSpec, theirs: PipelineSpec, mine: PipelineSpec) -> list[str]:
    """The parts where `mine` and `theirs`, two edits of `base`, collide; [] when they merge cleanly.

    A part collides when both sides changed it differently (one edited step `train`, the
    other edited, renamed or removed it), or when one side's new wiring leans on a part
    whose interface the other side changed (an input bound to `prep.data` while the other
    side dropped that output).
    """
    t, m = spec_change(base, theirs), spec_change(base, mine)
    theirs_parts, mine_parts = spec_parts(theirs), spec_parts(mine)
    both = {k for k in t.changed & m.changed if theirs_parts.get(k, _MISSING) != mine_parts.get(k, _MISSING)}
    return sorted(both | (m.wiring & t.interface) | (t.wiring & m.interface))


def _merged_order(theirs: list[str], mine: list[str], keep: set[str]) -> list[str]:
    """Their order; a name only mine has goes after its neighbour in mine (else before the next one, else last)."""
    order = [k for k in theirs if k in keep]
    placed = set(order)
    for i, key in enumerate(mine):
        if key in keep and key not in placed:
            before = next((p for p in reversed(mine[:i]) if p in placed), None)
            after = next((p for p in mine[i + 1 :] if p in placed), None)
            if before is not None:
                order.insert(order.index(before) + 1, key)
            elif after is not None:
                order.insert(order.index(after), key)
            else:
                order.append(key)
            placed.add(key)
    return order


def spec_merge(*, base: PipelineSpec, theirs: PipelineSpec, mine: PipelineSpec) -> PipelineSpec:
    """`theirs` with every part that `mine` changed since `base` taken whole from `mine`.

    Meant for edits that `spec_conflicts` found apart: each part then comes from one side.
    """
    changed = spec_change(base, mine).changed

    def pick(kind: str, their_items: dict, my_items: dict) -> dict:
        kept = {k: v for k, v in their_items.items() if f"{kind}:{k}" not in changed}
        kept.update({k: v for k, v in my_items.items() if f"{kind}:{k}" in changed})
        return {k: kept[k] for k in _merged_order(list(their_items), list(my_items), set(kept))}

    files = {k: v for k, v in theirs.files.items() if _file_part(k) not in changed}
    files.update({k: v for k, v in mine.files.items() if _file_part(k) in changed})
    top = mine if PIPELINE_PART in changed else theirs
    return replace(
        top,
        inputs=pick("input", theirs.inputs, mine.inputs),
        outputs=pick("output", theirs.outputs, mine.outputs),
        jobs=pick("step", theirs.jobs, mine.jobs),
        files=files,
    )


def part_label(part: str) -> str:
    kind, _, name = part.partition(":")
    if kind == "step":
        return f"step {name}"
    if kind == "input":
        return f"pipeline input {name}"
    if kind == "output":
        return f"pipeline output {name}"
    return "the pipeline's settings"


def part_change_text(before: PipelineSpec, after: PipelineSpec, part: str) -> str:
    """What became of `part` from `before` to `after`, in words: "removed or renamed", "changed its command, code"."""
    before_parts, after_parts = spec_parts(before), spec_parts(after)
    old, new = before_parts.get(part), after_parts.get(part)
    if old == new:
        # Untouched itself: the other side wired something new to it.
        readers = [
            f"step {name}"
            for name, step in after.jobs.items()
            if before_parts.get(f"step:{name}") != after_parts.get(f"step:{name}")
            and part in _new_wiring(before.jobs.get(name), step)
        ]
        return "newly wired to " + ", ".join(readers) if readers else "unchanged"
    if old is None:
        return "added"
    if new is None:
        return "removed or renamed"
    kind, _, name = part.partition(":")
    if kind != "step":
        return "changed"
    a, b = before.jobs[name], after.jobs[name]
    words = [_STEP_FIELD_WORDS.get(f.name, f.name) for f in fields(Step) if getattr(a, f.name) != getattr(b, f.name)]
    old_files, new_files = _part_files(before).get(part, {}), _part_files(after).get(part, {})
    for prefix, word in (("code/", "code"), ("data/", "input data")):
        if {k: v for k, v in old_files.items() if k.startswith(prefix)} != {
            k: v for k, v in new_files.items() if k.startswith(prefix)
        }:
            words.append(word)
    return "changed its " + ", ".join(dict.fromkeys(words)) if words else "changed"
