"""The bench's pipeline shapes, built as specs (the same dataclasses the YAML loader produces)."""

from __future__ import annotations

from stepwise.spec.model import InputDecl, JobOutput, OutputDecl, Pipeline, Settings, Step

NOOP = "python -c pass"
TARGET = "bench"


def step(name: str, ups: list[str] | tuple[str, ...] = (), *, command: str = NOOP) -> Step:
    """A command step with one folder output `out`, wired to each upstream step's `out`."""
    return Step(
        name=name,
        command=command,
        input_decls={f"in{i}": InputDecl(type="uri_folder") for i in range(len(ups))},
        inputs={f"in{i}": JobOutput(job=up, output="out") for i, up in enumerate(ups)},
        output_decls={"out": OutputDecl(type="uri_folder")},
        compute=TARGET,
    )


def pipeline_of(name: str, steps: list[Step]) -> Pipeline:
    return Pipeline(
        name=name, display_name=name, settings=Settings(default_compute=TARGET), jobs={s.name: s for s in steps}
    )


def chain(name: str, n: int, *, first_command: str = NOOP) -> Pipeline:
    """s0 -> s1 -> ... -> s(n-1)."""
    steps = [step("s0", command=first_command)]
    steps += [step(f"s{i}", [f"s{i - 1}"]) for i in range(1, n)]
    return pipeline_of(name, steps)


def fan(name: str, n: int) -> Pipeline:
    """root -> n independent steps -> join."""
    middle = [step(f"m{i}", ["root"]) for i in range(n)]
    return pipeline_of(name, [step("root"), *middle, step("join", [s.name for s in middle])])


def layered(name: str, n: int, *, width: int = 10) -> Pipeline:
    """n steps in layers of `width`; each step reads one or two steps of the layer before.

    The shape of a wide ML pipeline (per-partition preprocessing, training, evaluation),
    with about 1.9 edges per step.
    """
    steps: list[Step] = []
    for i in range(n):
        layer, pos = divmod(i, width)
        if layer == 0:
            ups: list[str] = []
        else:
            base = (layer - 1) * width
            ups = [f"s{base + pos}"]
            if width > 1:
                ups.append(f"s{base + (pos + 1) % width}")
        steps.append(step(f"s{i}", ups))
    return pipeline_of(name, steps)
