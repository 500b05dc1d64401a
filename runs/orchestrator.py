"""What runs next: `run_advance` applies the pure DAG logic (stepwise/dag.py) to a run.

`run_advance` is called when a run is created and whenever a step run ends, by the
worker that ended it, so a downstream step is enqueued the moment it becomes ready.
The run row is locked for the decision, so two workers finishing sibling steps at
once cannot both enqueue the join.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping

from django.conf import settings
from django.db import transaction
from django.db.models import Subquery

from runs import artifacts, environments, queues, rows
from runs.data_assets import register_named_outputs, run_data_artifacts
from runs.models import RUN_TERMINAL, Artifact, ComputeTarget, Run, RunState, StepOutput, StepRun, StepState
from runs.registry.services import register_named_model_outputs
from runs.specs import (
    parent_input_value,
    resolve_literal_inputs,
    step_command,
    tree_hash,
    version_file_map,
    version_spec,
)
from runs.transitions import run_transition, step_run_queue_and_start, step_run_transition
from stepwise.dag import blocked_steps, ready_steps, run_outcome
from stepwise.spec.model import SECRET_TYPE, DataPath, JobOutput, ParentInput, Pipeline, Step
from stepwise.spec.sweep import sweep_to_json

log = logging.getLogger(__name__)


# ---- fingerprints (design.md, Reuse) ---------------------------------------------


def fingerprint_parts(
    pipeline: Pipeline,
    step: Step,
    *,
    run_inputs: dict,
    file_map: dict[str, str],
    upstream_outputs: Mapping[tuple[str, str], str],
    secret_names: Iterable[str] = (),
    data_assets: Mapping[str, str] | None = None,
    environment: str | dict[str, object] | None = None,
) -> dict:
    """Everything that decides a step's outputs; `upstream_outputs[(job, output)]` is an artifact sha.

    `environment`: what the step's compute target builds its environment from, where that is not
    the step's own (a name the target defines: runs.environments.for_target).

    A secret input counts only as given or not (`secret_names`: the run's secrets): its value
    takes no part, so rotating a token reuses the results made with the old one, and the parts
    (shown as "why reused") hold nothing secret.
    """
    literals = resolve_literal_inputs(pipeline, step, run_inputs)
    given = set(secret_names)
    inputs: dict[str, object] = {}
    for name in sorted(step.input_decls):
        if name in literals:
            inputs[name] = {"value": literals[name]}
            continue
        binding = step.inputs.get(name)
        if step.input_decls[name].type == SECRET_TYPE:
            source = binding.name if isinstance(binding, ParentInput) else None
            inputs[name] = {"secret": "given" if source in given else "not given"}
            continue
        if isinstance(binding, JobOutput):
            inputs[name] = {"data": upstream_outputs.get((binding.job, binding.output))}
        elif isinstance(binding, DataPath):
            inputs[name] = {"data": tree_hash(file_map, binding.key)}
        elif isinstance(binding, ParentInput):
            parent = pipeline.inputs.get(binding.name)
            if parent is not None and parent.asset is not None:
                # The content hash of the version this run resolved, not the reference's text.
                inputs[name] = {"data": (data_assets or {}).get(binding.name)}
            elif parent is not None and parent.data is not None:
                inputs[name] = {"data": tree_hash(file_map, parent.data.key)}
            else:
                inputs[name] = {"value": parent_input_value(pipeline, run_inputs, binding.name)}
        else:
            inputs[name] = {"data": None}
    try:
        command = step_command(pipeline, step, run_inputs)
    except ValueError:
        command = step.command  # the step fails when it starts, saying why; this matches no success
    parts: dict[str, object] = {
        "command": command,
        "code": tree_hash(file_map, f"code/{step.name}"),
        "inputs": inputs,
        "environment": step.environment if environment is None else environment,
        "environment_variables": dict(sorted(step.environment_variables.items())),
        "outputs": {name: decl.type for name, decl in sorted(step.output_decls.items())},
    }
    if step.distribution is not None:
        # Only when set: the fingerprints of every other step stay what earlier runs recorded.
        parts["distribution"] = {"type": step.distribution.type, "processes": step.distribution.processes}
    if step.sweep is not None:
        # Only for sweeps, so that every command step's fingerprint stays what it was.
        parts["sweep"] = sweep_to_json(step.sweep)
    return parts


def fingerprint(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def find_reusable(step_run: StepRun, fp: str, *, output_count: int) -> tuple[StepRun | None, list[StepOutput], str]:
    """The newest earlier successful step run of the same team with this fingerprint whose outputs are intact.

    Returns (origin, its outputs, why not) where `why not` explains a rejected candidate:
    outputs whose files went missing or no longer match their hash are never reused. Equal
    fingerprints mean equal output names, so an origin has exactly `output_count` outputs.

    Only the team's own runs count: a secret input takes part only as given or not, so another
    team's identical step may have made its outputs with credentials this team does not hold.
    """
    verify = settings.STEPWISE_REUSE_VERIFY == "hash"
    team = Run.objects.filter(pk=step_run.run_id).values("pipeline__team_id")
    earlier = {"fingerprint": fp, "state": StepState.SUCCEEDED, "run__pipeline__team_id": Subquery(team)}
    if output_count:
        # One query for the candidates and their outputs: reuse runs this once per step.
        rows = (
            StepOutput.objects.filter(**{f"step_run__{k}": v for k, v in earlier.items()})
            .exclude(step_run__run_id=step_run.run_id)
            .select_related("artifact", "step_run")
            .defer("step_run__fingerprint_parts")
            .order_by("-step_run_id", "name")[: 5 * output_count]
        )
        by_origin: dict[int, list[StepOutput]] = {}
        for row in rows:
            by_origin.setdefault(row.step_run_id, []).append(row)
        candidates = [(outs[0].step_run, outs) for outs in by_origin.values() if len(outs) == output_count]
    else:
        origins = StepRun.objects.filter(**earlier).exclude(run_id=step_run.run_id).defer("fingerprint_parts")
        candidates = [(origin, []) for origin in origins.order_by("-id")[:1]]
    why_not = ""
    for candidate, outs in candidates:
        broken = [o.name for o in outs if not artifacts.artifact_intact(o.artifact, verify_content=verify)]
        if not broken:
            return candidate, outs, ""
        why_not = f"not reused: the outputs of run #{candidate.run_id} ({', '.join(broken)}) are missing or corrupted"
    return None, [], why_not


# ---- advancing a run ----------------------------------------------------------------


# A step run's row but its fingerprint parts, which only the run page shows.
STEP_FIELDS = tuple(f.attname for f in StepRun._meta.concrete_fields if f.name != "fingerprint_parts")


class StepRows(dict):
    """`name -> StepRun` of one run, read when first needed."""

    def __init__(self, run_id: int):
        super().__init__()
        self.run_id = run_id

    def load(self, names: Iterable[str]) -> dict[str, StepRun]:
        names = list(names)
        missing = [n for n in names if n not in self]
        if missing:
            found = rows.select(StepRun, {"run_id": self.run_id, "name": missing}, fields=STEP_FIELDS)
            self.update({s.name: s for s in found})
        return {n: self[n] for n in names}


class RunOutputs(dict):
    """`(job, output) -> artifact sha256` of one run, read per upstream job when first needed.

    Reading every output of the run on every advance would make a long chain quadratic.
    """

    def __init__(self, run_id: int):
        super().__init__()
        self.run_id = run_id
        self.loaded: set[str] = set()
        # (job, output) -> the artifact, for the step a worker keeps (see `run_advance`).
        self.artifacts: dict[tuple[str, str], Artifact] = {}

    def known(self, job: str, artifacts: Mapping[str, Artifact]) -> None:
        """`job`'s outputs, all of them, as its caller registered them: not read again."""
        for output, artifact in artifacts.items():
            self.add(job, output, artifact)
        self.loaded.add(job)

    def load(self, jobs: Iterable[str]) -> None:
        missing = set(jobs) - self.loaded
        if not missing:
            return
        for job, output, artifact_id, sha, kind in rows.run_outputs(self.run_id, sorted(missing)):
            self.add(job, output, Artifact(pk=artifact_id, sha256=sha, kind=kind))
        self.loaded |= missing

    def add(self, job: str, output: str, artifact: Artifact) -> None:
        self[(job, output)] = artifact.sha256
        self.artifacts[(job, output)] = artifact


def run_with_version(run_id: int, *, for_update: bool = False) -> Run | None:
    """The run, and of its version only what the spec's cache needs (runs/specs.py), not its
    spec or files: one statement (runs/rows.py), cheaper than the ORM's join."""
    return rows.select_with_parent(Run, run_id, "version", ("id", "content_hash"), for_update=for_update)


def lock_run(run_id: int) -> Run | None:
    """Take the run's row lock, reading the run as `run_with_version` does, for `run_advance`.

    Whoever changes a step and then advances the run in one transaction takes it first, in the
    same order as `run_advance`, so that two workers can never wait on each other (one holding
    the run, the other a step of it); and hands the run to `run_advance`, which reads it no more.
    """
    return run_with_version(run_id, for_update=True)


def _waiting(steps: StepRows, states: dict[str, str], queue: str) -> StepRun | None:
    """A first attempt of the run waiting in `queue` since an earlier advance (a fan-out's other
    branches), for a worker to start without the queue: one of the last sent there, as RQ hands
    out the first ones. Not a retry: that waits out its backoff in RQ's scheduler."""
    last = sorted(n for n, s in states.items() if s == StepState.QUEUED)[-WAITING_LOOKED_AT:]
    loaded = steps.load(last)
    for name in reversed(last):
        if loaded[name].queue == queue and loaded[name].attempt == 1:
            return loaded[name]
    return None


# How many of a run's queued steps `_waiting` reads: their rows, not all of a wide fan-out's.
WAITING_LOOKED_AT = 4


class _Targets:
    """The compute targets of an advance's steps, read once each, and only for a step that names
    an environment (which its target may define)."""

    def __init__(self) -> None:
        self.by_queue: dict[str, ComputeTarget | None] = {}

    def environment(self, queue: str, environment: str | dict[str, object]) -> str | dict[str, object]:
        if not isinstance(environment, str) or not environment:
            return environment
        if queue not in self.by_queue:
            self.by_queue[queue] = next(iter(rows.select(ComputeTarget, {"queue": queue})), None)
        return environments.for_target(environment, self.by_queue[queue])


def run_advance(
    run_id: int,
    *,
    start_one_of_queue: str | None = None,
    worker: str = "",
    draining: Callable[[], bool] = lambda: False,
    run: Run | None = None,
    finished: tuple[str, Mapping[str, Artifact]] | None = None,
) -> StepRun | None:
    """Settle what can be settled (reuse, skip, cancel), enqueue what is ready, finish the run.

    With `start_one_of_queue`, one step made ready on that queue (or, if none, one of the run's
    steps already waiting there: `_waiting`, its RQ job withdrawn after commit) is not sent to RQ
    but started here, running as `worker`'s, and returned for that worker to run next itself: a
    chain or a fan-out then costs no queue round trip and no transaction of its own per step;
    unless `draining()` says the worker takes no further step (asked only when there is one to
    start). Should that worker die first, the reconciler fails the attempt as lost and its retry
    goes to the queue.

    What the caller's transaction already holds is not read again: `run`, as `lock_run` returned
    it, and `finished`, the step that succeeded in it with its outputs (`{output: artifact}`).
    """
    to_enqueue: list[StepRun] = []
    kept: StepRun | None = None
    keep: bool | None = None  # whether the worker may start a step itself: `draining` asked once, if needed

    def may_keep() -> bool:
        nonlocal keep
        if keep is None:
            keep = not draining()
        return keep

    # No savepoint inside a caller's transaction (the end of a step): two round trips a step.
    with transaction.atomic(savepoint=False):
        # The version's spec is cached per process: don't read (and parse) it with every advance.
        if run is None:
            run = run_with_version(run_id, for_update=True)
        if run is None:
            return None  # deleted with its pipeline meanwhile: nothing left to advance
        if run.state in RUN_TERMINAL:
            return None
        pipeline = version_spec(run.version)
        file_map = version_file_map(run.version)
        data_shas = (
            {n: a.sha256 for n, a in run_data_artifacts(run).items()}
            if any(d.asset is not None for d in pipeline.inputs.values())
            else {}
        )
        upstream = pipeline.upstream()
        targets = _Targets()
        # Every step's state, but whole rows only of the steps about to change.
        states: dict[str, str] = dict(rows.values(StepRun, ("name", "state"), {"run_id": run.pk}))
        steps = StepRows(run.pk)
        outputs = RunOutputs(run.pk)
        if finished is not None:
            outputs.known(*finished)

        stopping = run.cancel_requested or run.timed_out
        stop_all = stopping or (
            not run.continue_on_step_failure and any(s == StepState.FAILED for s in states.values())
        )
        if stop_all:
            if run.timed_out:
                reason = "the run timed out"
            elif run.cancel_requested:
                reason = "the run was canceled"
            else:
                reason = "an upstream step failed"
            in_flight = [n for n, s in states.items() if s in (StepState.PENDING, StepState.QUEUED, StepState.RUNNING)]
            for name, step_run in steps.load(in_flight).items():
                if step_run.state == StepState.PENDING:
                    # Never started: skipped, whatever stopped the run (design.md, States).
                    step_run_transition(step_run=step_run, to=StepState.SKIPPED, reason=reason)
                elif step_run.state in (StepState.QUEUED, StepState.RUNNING):
                    # A running step's worker sees this on its next heartbeat and kills the process tree.
                    step_run_transition(step_run=step_run, to=StepState.CANCELED, reason=reason)
                states[name] = step_run.state

        reusing = False
        changed = True
        while changed:
            changed = False
            for name in steps.load(blocked_steps(upstream, states)):
                step_run_transition(
                    step_run=steps[name], to=StepState.SKIPPED, reason="an upstream step did not succeed"
                )
                states[name] = StepState.SKIPPED
                changed = True
            ready = ready_steps(upstream, states)
            steps.load(ready)
            for name in sorted(ready):
                step_run = steps[name]
                step = pipeline.jobs[name]
                outputs.load(upstream[name])
                parts = fingerprint_parts(
                    pipeline,
                    step,
                    run_inputs=run.inputs,
                    file_map=file_map,
                    upstream_outputs=outputs,
                    secret_names=run.secrets,
                    data_assets=data_shas,
                    environment=targets.environment(step_run.queue, step.environment),
                )
                fp = fingerprint(parts)
                step_run.fingerprint, step_run.fingerprint_parts = fp, parts
                # Written by the transition below, in the same UPDATE.
                recorded = {"fingerprint": fp, "fingerprint_parts": parts}
                origin, origin_outputs, why_not = None, [], ""
                if not step.is_deterministic:
                    why_not = "is_deterministic is false: always executes"
                elif run.force_rerun or step_run.force:
                    why_not = "rerun forced"
                else:
                    origin, origin_outputs, why_not = find_reusable(step_run, fp, output_count=len(step.output_decls))
                if origin is not None:
                    # The run read above, with its version: registering named outputs reads it, and
                    # would otherwise load the run and its whole version (spec and files) per step.
                    step_run.run = run
                    linked = [StepOutput(step_run=step_run, name=o.name, artifact=o.artifact) for o in origin_outputs]
                    StepOutput.objects.bulk_create(linked)
                    register_named_outputs(step_run=step_run)
                    register_named_model_outputs(step_run=step_run)
                    for out in linked:
                        outputs.add(name, out.name, out.artifact)
                    outputs.loaded.add(name)
                    if not reusing:
                        # One reuse tends to make the next step ready and reusable too (a rerun):
                        # read every pending row now rather than one query per step.
                        reusing = True
                        steps.load(n for n, s in states.items() if s == StepState.PENDING)
                    step_run_transition(
                        step_run=step_run,
                        to=StepState.REUSED,
                        reused_from=origin,
                        reason=f"reused from run #{origin.run_id}, step {origin.name}",
                        **recorded,
                    )
                elif kept is None and step_run.queue == start_one_of_queue and may_keep():
                    # Started here as the worker's that advanced the run, which runs it next itself.
                    if step_run_queue_and_start(step_run=step_run, reason=why_not, worker=worker, **recorded):
                        kept = step_run
                else:
                    step_run_transition(step_run=step_run, to=StepState.QUEUED, reason=why_not, **recorded)
                    to_enqueue.append(step_run)
                states[name] = step_run.state
                changed = True

        if run.state == RunState.QUEUED and (to_enqueue or any(s != StepState.PENDING for s in states.values())):
            run_transition(run=run, to=RunState.RUNNING)
        outcome = run_outcome(states.values(), cancel_requested=run.cancel_requested and not run.timed_out)
        if outcome is not None:
            failed = [n for n, s in states.items() if s == StepState.FAILED]
            reason = f"step failed: {', '.join(sorted(failed))}" if failed else ""
            if run.timed_out:
                outcome, reason = RunState.FAILED, f"timeout: the run ran longer than {run.timeout_s} s"
            run_transition(run=run, to=outcome, reason=reason)
        if start_one_of_queue is not None and kept is None and outcome is None:
            waiting = _waiting(steps, states, start_one_of_queue)
            if (
                waiting is not None
                and may_keep()
                and step_run_transition(step_run=waiting, to=StepState.RUNNING, worker=worker)
            ):
                kept = waiting
                transaction.on_commit(lambda: queues.withdraw_step(waiting))
        if kept is not None:
            # Its worker starts it with the run, version and upstream outputs read here.
            kept.run = run
            outputs.load(upstream[kept.name])
            kept.upstream_artifacts = {k: a for k, a in outputs.artifacts.items() if k[0] in upstream[kept.name]}
        if to_enqueue:
            transaction.on_commit(lambda: queues.enqueue_steps(to_enqueue))
    return kept
