"""Reads for the run pages: access, lists, the run page's parts, logs, metrics, worker liveness."""

from __future__ import annotations

import functools
import logging
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from django.db.models import Count, F, Max, Q, QuerySet
from django.http import Http404
from django.urls import reverse
from django.utils import timezone

from pipelines_ui.models import Membership, Pipeline, PipelineVersion, Role
from runs import metric_reads
from runs.logs import omitted_text
from runs.models import (
    RUN_TERMINAL,
    STEP_DONE,
    STEP_TERMINAL,
    ComputeTarget,
    LogChunk,
    Metric,
    Run,
    RunState,
    StepOutput,
    StepRun,
    StepState,
)
from runs.queues import get_queue
from runs.specs import version_spec
from stepwise import dag

log = logging.getLogger(__name__)

EDIT_ROLES = frozenset({Role.EDITOR, Role.ADMIN})
LOG_TAIL_LINES = 500
LOG_PAGE_MAX = 5000
SPARK_POINTS = 200
# A step may log thousands of names (per class, per layer): the table shows the first ones.
SPARK_NAMES = 100
WORKER_CACHE_S = 5.0


# ---- access ------------------------------------------------------------------------


def pipeline_for_user(*, user, pipeline_id: int) -> Pipeline:
    pipeline = Pipeline.objects.for_user(user).select_related("team", "latest_version").filter(pk=pipeline_id).first()
    if pipeline is None:
        raise Http404("No such pipeline")
    return pipeline


def run_for_user(*, user, run_id: int) -> Run:
    run = (
        Run.objects.for_user(user)
        .select_related("pipeline", "pipeline__team", "version", "created_by", "rerun_of")
        .defer("version__spec", "version__files")
        .filter(pk=run_id)
        .first()
    )
    if run is None:
        raise Http404("No such run")
    return run


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def valid_name(name: str) -> bool:
    """Names with control characters never exist (and PostgreSQL refuses NUL in a query)."""
    return bool(name) and len(name) <= 255 and not _CONTROL.search(name)


def step_run_for_run(*, run: Run, name: str) -> StepRun:
    if not valid_name(name):
        raise Http404("No such step")
    step_run = run.steps.filter(name=name).first()
    if step_run is None:
        raise Http404("No such step")
    step_run.run = run
    return step_run


def user_can_run(user, pipeline: Pipeline) -> bool:
    """Starting, canceling and rerunning need an editor or admin role in the pipeline's team."""
    if not user.is_authenticated:
        return False
    return Membership.objects.filter(user=user, team_id=pipeline.team_id, role__in=EDIT_ROLES).exists()


def run_visible(*, user, run_id: int) -> bool:
    return Run.objects.for_user(user).filter(pk=run_id).exists()


# ---- the runs list -------------------------------------------------------------------


def run_list(*, user, pipeline_id: int | None = None, state: str | None = None) -> QuerySet[Run]:
    # No per-row aggregates here: annotating step counts would group every visible run
    # before the page's LIMIT applies (seconds at 100,000 runs). See `with_step_counts`.
    qs = (
        Run.objects.for_user(user)
        .select_related("pipeline", "version", "created_by")
        .defer("inputs", "version__spec", "version__files")
        .order_by("-id")
    )
    if pipeline_id is not None:
        qs = qs.filter(pipeline_id=pipeline_id)
    if state:
        qs = qs.filter(state=state)
    return qs


def with_step_counts(runs: list[Run]) -> list[Run]:
    """Attach `step_total` and `step_finished` (succeeded or reused) to one page of runs, in one grouped query."""
    counts = {
        row["run_id"]: row
        for row in StepRun.objects.filter(run_id__in=[r.pk for r in runs])
        .values("run_id")
        .annotate(total=Count("id"), finished=Count("id", filter=Q(state__in=STEP_DONE)))
    }
    for run in runs:
        row = counts.get(run.pk, {})
        run.step_total, run.step_finished = row.get("total", 0), row.get("finished", 0)
    return runs


def last_runs(pipeline_ids: list[int]) -> dict[int, Run]:
    """The newest run of each of these pipelines, by pipeline id (two queries for a page of them)."""
    newest = (
        Run.objects.filter(pipeline_id__in=pipeline_ids).values("pipeline_id").annotate(last=Max("id")).values("last")
    )
    runs = Run.objects.filter(id__in=newest).only(
        "id", "pipeline_id", "state", "created_at", "started_at", "finished_at"
    )
    return {run.pipeline_id: run for run in runs}


def pipeline_choices(*, user) -> list[tuple[int, str]]:
    return [
        (pk, f"{name} ({team})")
        for pk, name, team in Pipeline.objects.for_user(user).order_by("name").values_list("pk", "name", "team__name")
    ]


# ---- worker liveness -----------------------------------------------------------------

_worker_cache: dict[str, tuple[float, bool]] = {}


def queue_has_worker(queue_name: str) -> bool:
    """Whether a live RQ worker listens on the queue; cached briefly (a Redis round trip per queue)."""
    now = time.monotonic()
    cached = _worker_cache.get(queue_name)
    if cached is not None and now - cached[0] < WORKER_CACHE_S:
        return cached[1]
    from rq import Worker

    try:
        queue = get_queue(queue_name)
        alive = bool(Worker.all(connection=queue.connection, queue=queue))
    except Exception as exc:  # Redis down: say so through the banner rather than fail the page
        log.warning("cannot list workers of %s: %s", queue_name, exc)
        alive = False
    _worker_cache[queue_name] = (now, alive)
    return alive


def target_names(queue_names: set[str]) -> dict[str, str]:
    names = dict(ComputeTarget.objects.filter(queue__in=queue_names).values_list("queue", "name"))
    return {q: names.get(q, q) for q in queue_names}


# ---- the run page --------------------------------------------------------------------


@dataclass
class StepRow:
    step: StepRun
    waiting_for: str = ""  # the compute target a queued step waits for, when no worker serves it


@dataclass
class TimelineBar:
    name: str
    label: str
    state: str
    left: float
    width: float
    queued_left: float
    queued_width: float
    duration_s: float | None


@dataclass
class MetricSeries:
    name: str
    last: float
    minimum: float
    maximum: float
    count: int
    points: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Progress:
    """`done` counts the steps that succeeded or were reused: a failed, canceled or skipped step
    ended, but is not done, and the bar says so in its own colour."""

    total: int
    done: int
    counts: dict[str, int]

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0

    def others(self) -> list[tuple[str, int]]:
        """(state, count) of the steps that ended without being done, for the text beside the bar."""
        wanted = (StepState.FAILED, StepState.CANCELED, StepState.SKIPPED)
        return [(state.value, self.counts[state]) for state in wanted if self.counts.get(state)]

    def segments(self) -> list[tuple[str, float, int]]:
        """(kind, width %, count) for the stacked bar: done, failed, stopped, running."""
        if not self.total:
            return []
        groups = {
            "done": sum(self.counts.get(s, 0) for s in STEP_DONE),
            "failed": self.counts.get(StepState.FAILED, 0),
            "stopped": self.counts.get(StepState.SKIPPED, 0) + self.counts.get(StepState.CANCELED, 0),
            "running": self.counts.get(StepState.RUNNING, 0),
        }
        return [(kind, 100 * n / self.total, n) for kind, n in groups.items() if n]


# What the run page shows of every step; the rest (fingerprints, reuse origins) is read
# for the few rows on screen only, which keeps a 5,000-step run page fast.
STEP_LIST_FIELDS = (
    "id",
    "run_id",
    "name",
    "display_name",
    "state",
    "attempt",
    "max_retries",
    "queue",
    "queued_at",
    "started_at",
    "finished_at",
    "exit_code",
    "reason",
    "reused_from_id",
    "worker",
    "log_lines",
)


class StepSummary(NamedTuple):
    id: int
    name: str
    state: str
    attempt: int


def step_summaries(run: Run) -> list[StepSummary]:
    """Every step of the run, light: enough for progress, states and choosing what to show."""
    return [StepSummary(*row) for row in run.steps.order_by("id").values_list("id", "name", "state", "attempt")]


def run_steps(run: Run, ids: list[int] | None = None) -> dict[int, StepRun]:
    """Whole rows (with their reuse origins) of the run's steps, or of the steps `ids`, by id."""
    rows = run.steps.select_related("reused_from").only(*STEP_LIST_FIELDS, "reused_from__run_id", "reused_from__name")
    if ids is not None:
        rows = rows.filter(id__in=ids)
    steps = {step.id: step for step in rows.order_by("id")}
    for step in steps.values():
        step.run = run
    return steps


def most_telling(steps: list[StepRun], limit: int) -> list[StepRun]:
    """At most `limit` steps in their order: failed, running and queued ones first."""
    if len(steps) <= limit:
        return steps
    urgent = {StepState.FAILED: 0, StepState.RUNNING: 1, StepState.QUEUED: 2}
    chosen = sorted(range(len(steps)), key=lambda i: (urgent.get(steps[i].state, 3), i))[:limit]
    return [steps[i] for i in sorted(chosen)]


def step_rows(steps: list[StepRun]) -> list[StepRow]:
    waiting = {s.queue for s in steps if s.state == StepState.QUEUED}
    dead = {q for q in waiting if not queue_has_worker(q)}
    names = target_names(dead) if dead else {}
    return [StepRow(step=s, waiting_for=names.get(s.queue, "") if s.state == StepState.QUEUED else "") for s in steps]


def progress(steps: list[StepRun]) -> Progress:
    counts: dict[str, int] = defaultdict(int)
    for step in steps:
        counts[step.state] += 1
    done = sum(n for state, n in counts.items() if state in STEP_DONE)
    return Progress(total=len(steps), done=done, counts=dict(counts))


def timeline(run: Run, steps: list[StepRun], *, now: datetime | None = None) -> list[TimelineBar]:
    """Gantt bars as percentages of the run's span: a faint queued part, then the running part."""
    now = now or timezone.now()
    starts = [t for s in steps for t in (s.queued_at, s.started_at) if t]
    if not starts:
        return []
    origin = min([*starts, *([run.started_at] if run.started_at else [])])
    ends = [s.finished_at or (now if s.state not in STEP_TERMINAL else s.started_at or s.queued_at) for s in steps]
    end = max([t for t in ends if t] + ([run.finished_at] if run.finished_at else []) + starts)
    span = max((end - origin).total_seconds(), 0.001)

    def pct(t: datetime) -> float:
        return max(0.0, min(100.0, 100 * (t - origin).total_seconds() / span))

    bars = []
    for step in steps:
        queued = step.queued_at
        start = step.started_at
        stop = step.finished_at or (now if step.state == StepState.RUNNING else None)
        if start is None and queued is None:
            if step.state == StepState.REUSED and step.finished_at:
                start = stop = step.finished_at
            else:
                continue
        left = pct(start) if start else pct(queued)
        width = max(pct(stop) - left, 0.4) if start and stop else (0.4 if start else 0.0)
        q_left = pct(queued) if queued else left
        q_width = max(left - q_left, 0.0) if start else max(pct(stop or now) - q_left, 0.4)
        duration = (stop - start).total_seconds() if start and stop else None
        bars.append(
            TimelineBar(
                name=step.name,
                label=step.label,
                state=step.state,
                left=round(left, 2),
                width=round(width, 2),
                queued_left=round(q_left, 2),
                queued_width=round(q_width, 2),
                duration_s=duration,
            )
        )
    return bars


def default_selected_step(steps: list[StepRun]) -> StepRun | None:
    """The step a run page opens on: the running one, else the first failure, else the first step."""
    for wanted in (StepState.RUNNING, StepState.FAILED, StepState.QUEUED):
        for step in steps:
            if step.state == wanted:
                return step
    return steps[0] if steps else None


def step_outputs(step_run: StepRun) -> list[StepOutput]:
    return list(step_run.outputs.select_related("artifact").order_by("name"))


def step_metrics(step_run: StepRun) -> list[MetricSeries]:
    """One series per metric name, the first SPARK_NAMES by name, thinned in SQL for the sparkline."""
    rows = Metric.objects.filter(step_run=step_run)
    shown = metric_reads.summaries(rows, limit=SPARK_NAMES)
    points: dict[str, list[tuple[int, float]]] = defaultdict(list)
    sampled = metric_reads.thinned(
        rows.filter(name__in=[s.name for s in shown]), partition=["name"], order="id", cap=SPARK_POINTS
    )
    for name, step, value in sampled.order_by("id").values_list("name", "step", "value"):
        points[name].append((step, value))
    return [
        MetricSeries(
            name=s.name, last=s.last, minimum=s.minimum, maximum=s.maximum, count=s.count, points=points[s.name]
        )
        for s in shown
    ]


def step_metrics_hidden(step_run: StepRun, shown: list[MetricSeries]) -> int:
    """How many metric names step_metrics left out."""
    if len(shown) < SPARK_NAMES:
        return 0
    return metric_reads.name_count(Metric.objects.filter(step_run=step_run)) - len(shown)


def run_is_active(run: Run) -> bool:
    return run.state not in RUN_TERMINAL


def run_can_retry_failed(run: Run, steps: list[StepRun]) -> bool:
    """Only when a step failed: a canceled run with nothing failed offers Rerun alone."""
    return run.state in (RunState.FAILED, RunState.CANCELED) and any(s.state == StepState.FAILED for s in steps)


_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_RUN_PLACEHOLDER = 0


def run_step_url_prefix(run_id: int) -> str:
    return reverse("run_step", args=[run_id, "x"]).removesuffix("x/")


def run_graph_placeholder() -> str:
    """The step links' prefix in the run page's graph as laid out: each page puts its run's in."""
    return run_step_url_prefix(_RUN_PLACEHOLDER)


@functools.lru_cache(maxsize=32)
def run_graph_dot(
    version_id: int, content_hash: str, url_prefix: str, expand: tuple[str, ...] = (), collapse: tuple[str, ...] = ()
) -> str:
    """A version's DOT for run pages (versions are immutable: building it for 5,000 steps takes a while)."""
    spec = version_spec(PipelineVersion.objects.defer("spec", "files").get(pk=version_id))
    expansion = dag.expand_from_query({"expand": ",".join(expand), "collapse": ",".join(collapse)})
    return dag.pipeline_dot(spec, step_url=lambda name: f"{url_prefix}{name}/", **expansion)


# ---- logs ----------------------------------------------------------------------------


@dataclass
class LogPage:
    """Consecutive stored lines of a step's log: `lines` are lines first_seq .. next_seq - 1.

    `omitted` is (seq, count) of every run of lines that the database left out (runs/logs.py);
    a page never spans one, so that its lines stay consecutive.
    """

    lines: list[str]
    first_seq: int
    next_seq: int
    total: int
    omitted: list[tuple[int, int]] = field(default_factory=list)

    @property
    def omitted_before(self) -> int:
        """Lines left out right before the page (a marker goes there)."""
        return next((count for seq, count in self.omitted if seq + count == self.first_seq), 0)

    @property
    def omitted_after(self) -> int:
        """Lines left out right after the page."""
        return next((count for seq, count in self.omitted if seq == self.next_seq), 0)

    @property
    def shown_first_seq(self) -> int:
        """Where the page starts, counting the omitted lines its marker before the lines stands for."""
        return self.first_seq - self.omitted_before

    @property
    def shown_next_seq(self) -> int:
        return self.next_seq + self.omitted_after

    @property
    def omitted_total(self) -> int:
        return sum(count for _seq, count in self.omitted)

    def as_json(self) -> dict:
        return {
            "lines": self.lines,
            "first_seq": self.first_seq,
            "next_seq": self.next_seq,
            "total": self.total,
            "omitted": [{"seq": seq, "count": count, "text": omitted_text(count)} for seq, count in self.omitted],
        }


def log_total(step_run: StepRun) -> int:
    last = LogChunk.objects.filter(step_run=step_run).order_by("-seq").values_list("seq", "line_count").first()
    return last[0] + last[1] if last else 0


def log_omitted(step_run: StepRun) -> list[tuple[int, int]]:
    rows = LogChunk.objects.filter(step_run=step_run, omitted=True).order_by("seq").values_list("seq", "line_count")
    return list(rows)


def log_page(
    step_run: StepRun,
    *,
    after_seq: int | None = None,
    before_seq: int | None = None,
    limit: int = LOG_TAIL_LINES,
) -> LogPage:
    """A window of the step's log; lines are numbered from 0 across attempts.

    `after_seq=N` gives the lines from N on (N is the `next_seq` a client already holds), or
    from the end of the omitted lines N is among; `before_seq=N` gives the `limit` lines before
    line N ("load earlier"); neither gives the tail. A window stops where lines were left out.
    """
    limit = max(1, min(limit, LOG_PAGE_MAX))
    total = log_total(step_run)
    omitted = log_omitted(step_run)
    if after_seq is not None:
        start = max(0, after_seq)
        for seq, count in omitted:
            if seq <= start < seq + count:
                start = seq + count
        stop = min([total, start + limit] + [seq for seq, _count in omitted if seq >= start])
    else:
        stop = total if before_seq is None else min(max(before_seq, 0), total)
        for seq, count in reversed(omitted):
            if seq < stop <= seq + count:
                stop = seq
        start = max([0, stop - limit] + [seq + count for seq, count in omitted if seq + count <= stop])
    lines: list[str] = []
    if stop > start:
        chunks = (
            LogChunk.objects.filter(step_run=step_run, omitted=False)
            .annotate(end=F("seq") + F("line_count"))
            .filter(end__gt=start, seq__lt=stop)
            .order_by("seq")
            .values_list("seq", "text")
        )
        for seq, text in chunks:
            if seq > start + len(lines):
                # The worker dropped rows from its rolling tail since `omitted` was read: the page
                # starts after them (the client marks them omitted) or ends before them.
                if lines:
                    break
                start = seq
            chunk_lines = text.split("\n")
            lo = max(start + len(lines) - seq, 0)
            hi = min(stop - seq, len(chunk_lines))
            lines.extend(chunk_lines[lo:hi])
    return LogPage(lines=lines, first_seq=start, next_seq=start + len(lines), total=total, omitted=omitted)
