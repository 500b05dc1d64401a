"""Reads for metric charts and run comparison: chart series, final metrics and parameters, the
runs list's metric column and its `metric > value` filter, and the compare page's tables."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Max, OuterRef, QuerySet, Subquery
from django.http import Http404
from django.urls import reverse

from pipelines_ui.version_diff import changed_parts
from runs import metric_reads
from runs.models import Metric, Param, Run, StepRun
from runs.specs import version_spec
from stepwise.spec.model import SECRET_TYPE

MIN_COMPARE = 2
MAX_COMPARE = 10
# Points per line drawn; longer series are thinned evenly, keeping the first and last points.
MAX_CHART_POINTS = 2000
# Charts per page: a step may log thousands of names (per class, per layer).
MAX_CHARTS = 100
# Rows of the compare page's final metrics table: a number is cheaper than a chart, but a page
# of ten thousand names is no page.
MAX_FINAL_METRICS = 500
KEY_METRICS = 2


class CompareError(ValueError):
    """What is wrong with the runs asked for, in words for the page."""


class TooFewRuns(CompareError):
    """Fewer than two runs picked: nothing is wrong yet, the page says what to pick."""


class FilterError(ValueError):
    """What is wrong with a metric filter, in words for the page."""


# ---- chart series ----------------------------------------------------------------------


def _latest_thinned(rows: QuerySet[Metric], partition: list[str]) -> QuerySet[Metric]:
    """The rows a chart draws: per index the last logged (a retry logging an index again replaces
    its point, as the live chart does), at most MAX_CHART_POINTS per line, thinned in SQL."""
    latest = rows.order_by().values(*partition, "step").annotate(last=Max("id")).values("last")
    return metric_reads.thinned(
        Metric.objects.filter(id__in=latest), partition=partition, order="step", cap=MAX_CHART_POINTS
    )


def _series(rows) -> dict[tuple, list[tuple[int, float]]]:
    """(key, index, value) rows -> key -> points sorted by index."""
    by_key: dict[tuple, list[tuple[int, float]]] = defaultdict(list)
    for key, index, value in rows:
        by_key[key].append((index, value))
    return {key: sorted(points) for key, points in by_key.items()}


def _first_names(rows: QuerySet[Metric], limit: int) -> list[str]:
    return list(rows.order_by("name").values_list("name", flat=True).distinct()[:limit])


def _chart_names(rows: QuerySet[Metric]) -> list[str]:
    return _first_names(rows, MAX_CHARTS)


def _hidden_count(rows: QuerySet[Metric], shown: int, limit: int) -> int:
    return metric_reads.name_count(rows) - shown if shown >= limit else 0


def hidden_chart_count(rows: QuerySet[Metric], charts: list[dict[str, Any]]) -> int:
    """How many metric names the charts left out."""
    return _hidden_count(rows, len(charts), MAX_CHARTS)


def run_charts(run: Run) -> list[dict[str, Any]]:
    """One chart per metric name (the first MAX_CHARTS), one line per step that logs it: what the
    run page draws first and what it fetches again to converge after missed events
    (runs.compare_views.run_metrics)."""
    rows = Metric.objects.filter(step_run__run=run)
    shown = rows.filter(name__in=_chart_names(rows))
    sampled = _latest_thinned(shown, ["name", "step_run"]).values_list("name", "step_run__name", "step", "value")
    series = _series(((name, step), index, value) for name, step, index, value in sampled)
    charts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (name, step), points in sorted(series.items()):
        charts[name].append({"key": step, "label": step, "points": points})
    return [{"name": name, "lines": lines} for name, lines in sorted(charts.items())]


def compare_charts(runs: list[Run]) -> list[dict[str, Any]]:
    """One chart per metric name (the first MAX_CHARTS), one line per run (and step, where several
    steps log the name)."""
    rows = Metric.objects.filter(step_run__run__in=[r.pk for r in runs])
    shown = rows.filter(name__in=_chart_names(rows))
    sampled = _latest_thinned(shown, ["name", "step_run"]).values_list(
        "name", "step_run__run_id", "step_run__name", "step", "value"
    )
    series = _series(((name, run_id, step), index, value) for name, run_id, step, index, value in sampled)
    steps_per_name: dict[str, set[str]] = defaultdict(set)
    for name, _run_id, step in series:
        steps_per_name[name].add(step)
    order = {r.pk: i for i, r in enumerate(runs)}
    charts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (name, run_id, step), points in sorted(series.items(), key=lambda item: (order[item[0][1]], item[0][2])):
        label = f"#{run_id}" + (f" {step}" if len(steps_per_name[name]) > 1 else "")
        charts[name].append({"key": f"{run_id}/{step}", "label": label, "points": points})
    return [{"name": name, "lines": lines} for name, lines in sorted(charts.items())]


# ---- final values -------------------------------------------------------------------------


def final_metrics(run_ids: list[int], names: list[str] | None = None) -> dict[int, dict[str, float]]:
    """run id -> metric name -> the value logged last (of any step): two queries for any number of runs."""
    rows = Metric.objects.filter(step_run__run_id__in=run_ids)
    if names is not None:
        rows = rows.filter(name__in=names)
    last_ids = rows.values("step_run__run_id", "name").annotate(last=Max("id")).values("last")
    result: dict[int, dict[str, float]] = {run_id: {} for run_id in run_ids}
    for run_id, name, value in Metric.objects.filter(id__in=last_ids).values_list("step_run__run_id", "name", "value"):
        result[run_id][name] = value
    return result


def run_params(run_ids: list[int]) -> dict[int, dict[str, str]]:
    """run id -> parameter name -> value (a later step's value wins where two steps log a name)."""
    result: dict[int, dict[str, str]] = {run_id: {} for run_id in run_ids}
    for run_id, name, value in (
        Param.objects.filter(step_run__run_id__in=run_ids)
        .order_by("step_run_id")
        .values_list("step_run__run_id", "name", "value")
    ):
        result[run_id][name] = value
    return result


def step_params(step_run: StepRun) -> list[Param]:
    return list(step_run.params.order_by("name"))


# ---- the runs list: key metrics and the filter ----------------------------------------------


@dataclass(frozen=True)
class MetricFilter:
    name: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.name} {self.op} {self.value:g}"


OPERATORS = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte", "=": "exact"}
_FILTER = re.compile(r"^\s*(?P<name>.+?)\s*(?P<op><=|>=|<|>|=)\s*(?P<value>\S+)\s*$", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_metric_filter(text: str) -> MetricFilter | None:
    """`accuracy > 0.9`: a metric name, one of < <= > >= =, and a number. None for an empty text."""
    text = (text or "").strip()
    if not text:
        return None
    if len(text) > 300:
        raise FilterError("The filter is too long: write a metric name, an operator and a number.")
    match = _FILTER.match(text)
    if match is None:
        raise FilterError(
            f"Cannot read the filter {text!r}: write a metric name, one of < <= > >= =, and a number, "
            "e.g. accuracy > 0.9."
        )
    name, op, raw = match.group("name").strip(), match.group("op"), match.group("value")
    if _CONTROL.search(name) or len(name) > 255 or any(c in name for c in "<>="):
        raise FilterError(f"{name!r} is not a metric name.")
    try:
        value = float(raw)
    except ValueError:
        raise FilterError(f"{raw!r} is not a number: compare the metric with a number, e.g. {name} {op} 0.5.") from None
    if not math.isfinite(value):
        raise FilterError(f"{raw!r} is not a finite number.")
    return MetricFilter(name=name, op=op, value=value)


def last_value_subquery(name: str) -> Subquery:
    """The value of metric `name` that a run logged last, as a correlated subquery on the run."""
    return Subquery(
        Metric.objects.filter(step_run__run_id=OuterRef("pk"), name=name).order_by("-id").values("value")[:1]
    )


def filter_runs(runs: QuerySet[Run], metric_filter: MetricFilter) -> QuerySet[Run]:
    """The runs whose last value of the metric satisfies the filter; runs without it drop out."""
    lookup = f"last_metric__{OPERATORS[metric_filter.op]}"
    return runs.annotate(last_metric=last_value_subquery(metric_filter.name)).filter(**{lookup: metric_filter.value})


def key_metric_names(run_ids: list[int], *, first: str | None = None, limit: int = KEY_METRICS) -> list[str]:
    """The metric names the runs list shows a column for: the filtered one, then the first names
    (alphabetically) that the runs on the page logged."""
    names = [first] if first else []
    if run_ids:
        found = (
            Metric.objects.filter(step_run__run_id__in=run_ids)
            .values_list("name", flat=True)
            .distinct()
            .order_by("name")[: limit + 1]
        )
        names += [n for n in found if n != first]
    # The filtered metric comes on top of the usual columns.
    return names[: limit + (1 if first else 0)]


def attach_key_metrics(runs: list[Run], names: list[str]) -> list[Run]:
    """Set `run.key_metrics` to [(name, value or None)] for each of `names`."""
    values = final_metrics([r.pk for r in runs], names) if names else {}
    for run in runs:
        run.key_metrics = [(name, values.get(run.pk, {}).get(name)) for name in names]
    return runs


# ---- the compare page ----------------------------------------------------------------------


def parse_ids(raw: str) -> list[int]:
    """`1,2,3` (spaces allowed) -> run ids in that order, repeats dropped; a clear error otherwise."""
    ids: list[int] = []
    for part in (raw or "").replace(" ", ",").split(","):
        if not part:
            continue
        if not part.isdigit() or len(part) > 12:
            raise CompareError(f"{part[:40]!r} is not a run number.")
        if int(part) not in ids:
            ids.append(int(part))
    if len(ids) < MIN_COMPARE:
        raise TooFewRuns(f"Pick {MIN_COMPARE} to {MAX_COMPARE} runs to compare.")
    if len(ids) > MAX_COMPARE:
        raise CompareError(f"At most {MAX_COMPARE} runs can be compared at once; {len(ids)} were picked.")
    return ids


def runs_for_compare(*, user, ids: list[int]) -> list[Run]:
    """The runs in the order asked; a run the user cannot see is a 404, as its own page is."""
    found = {
        run.pk: run
        for run in Run.objects.for_user(user)
        .select_related("pipeline", "pipeline__team", "version", "created_by")
        .filter(pk__in=ids)
    }
    missing = [i for i in ids if i not in found]
    if missing:
        raise Http404(f"No such run: #{missing[0]}")
    return [found[i] for i in ids]


@dataclass
class Row:
    """One line of a comparison table: a name and one cell per run; `differs` highlights it."""

    name: str
    cells: list[Any]
    differs: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _differs(values: list[Any]) -> bool:
    return len({repr(v) for v in values}) > 1


def _rows(per_run: list[dict[str, Any]]) -> list[Row]:
    names = sorted({name for values in per_run for name in values})
    rows = []
    for name in names:
        cells = [values.get(name) for values in per_run]
        rows.append(Row(name=name, cells=cells, differs=_differs(cells)))
    return rows


@dataclass
class VersionInfo:
    run: Run
    diff_url: str = ""  # the version diff against the first run's version, same pipeline only
    changes: list[Any] = field(default_factory=list)  # pipelines_ui.version_diff.ChangedPart


@dataclass
class Comparison:
    runs: list[Run]
    inputs: list[Row]
    params: list[Row]
    metrics: list[Row]
    steps: list[Row]
    versions: list[VersionInfo]
    charts: list[dict[str, Any]]
    same_pipeline: bool
    charts_hidden: int = 0
    metrics_hidden: int = 0

    @property
    def differing_inputs(self) -> int:
        return sum(1 for row in self.inputs + self.params if row.differs)


def _version_infos(runs: list[Run]) -> list[VersionInfo]:
    base = runs[0]
    infos = []
    for run in runs:
        info = VersionInfo(run=run)
        if run is not base and run.pipeline_id == base.pipeline_id and run.version_id != base.version_id:
            info.diff_url = (
                reverse("version_diff", args=[run.pipeline_id, run.version.number]) + f"?against={base.version.number}"
            )
            try:
                info.changes = changed_parts(version_spec(base.version), version_spec(run.version))
            except Exception:  # an unreadable old version: the link still leads to the full diff
                info.changes = []
        infos.append(info)
    return infos


def _step_rows(runs: list[Run]) -> list[Row]:
    by_run: dict[int, dict[str, StepRun]] = defaultdict(dict)
    order: list[str] = []
    for step in (
        StepRun.objects.filter(run__in=[r.pk for r in runs])
        .only("id", "run_id", "name", "display_name", "state", "attempt", "started_at", "finished_at")
        .order_by("run_id", "id")
    ):
        by_run[step.run_id][step.name] = step
        if step.name not in order:
            order.append(step.name)
    rows = []
    for name in order:
        cells = [by_run[r.pk].get(name) for r in runs]
        states = [c.state if c else None for c in cells]
        rows.append(Row(name=name, cells=cells, differs=_differs(states)))
    return rows


def _metric_rows(per_run: list[dict[str, float]]) -> list[Row]:
    """Final values, each with its difference to the first run's (None where either is missing)."""
    rows = _rows(per_run)
    for row in rows:
        base = row.cells[0]
        deltas = [
            None if i == 0 or value is None or base is None else value - base for i, value in enumerate(row.cells)
        ]
        row.extra["pairs"] = list(zip(row.cells, deltas, strict=True))
    return rows


def run_inputs(run: Run) -> dict[str, Any]:
    """The run's input values, with the version's defaults for the inputs the run did not set
    (a default and the same value typed in are the same input). Secret inputs never appear."""
    try:
        declared = version_spec(run.version).inputs
    except Exception:  # an unreadable old version: what the run stored
        declared = {}
    values = {
        name: decl.default
        for name, decl in declared.items()
        if decl.default is not None and decl.type != SECRET_TYPE and decl.data is None
    }
    values.update(run.inputs or {})
    return values


def compare(*, user, ids: list[int]) -> Comparison:
    runs = runs_for_compare(user=user, ids=ids)
    run_ids = [r.pk for r in runs]
    rows = Metric.objects.filter(step_run__run_id__in=run_ids)
    # The first names by name, as the charts take theirs: the table's rows and the charts agree.
    names = _first_names(rows, MAX_FINAL_METRICS)
    finals = final_metrics(run_ids, names)
    params = run_params(run_ids)
    charts = compare_charts(runs)
    return Comparison(
        runs=runs,
        inputs=_rows([run_inputs(r) for r in runs]),
        params=_rows([params[r.pk] for r in runs]),
        metrics=_metric_rows([finals[r.pk] for r in runs]),
        steps=_step_rows(runs),
        versions=_version_infos(runs),
        charts=charts,
        same_pipeline=len({r.pipeline_id for r in runs}) == 1,
        charts_hidden=hidden_chart_count(rows, charts),
        metrics_hidden=_hidden_count(rows, len(names), MAX_FINAL_METRICS),
    )
