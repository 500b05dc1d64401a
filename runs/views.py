"""Starting and watching runs: the run form, the run page and its parts, logs, outputs, the runs list."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_POST

from pipelines_ui import graph, team_secrets
from runs import compare, downloads, logs, reuse, selectors, sweep_selectors
from runs.forms import RunForm
from runs.models import RunState
from runs.services import RunInputError, run_cancel, run_create, run_rerun
from runs.specs import version_spec
from stepwise import dag, states
from stepwise.spec.bindings import INTEGER_MAX, INTEGER_MIN

RUNS_PER_PAGE = 25

# One template per part of the run page: the first render and every live refresh use them.
RUN_PARTS = {
    "header": "runs/_run_header.html",
    "progress": "runs/_progress.html",
    "steps": "runs/_steps_table.html",
    "timeline": "runs/_timeline.html",
    "step_detail": "runs/_step_detail.html",
    "metrics": "runs/_metrics.html",
    "trials": "runs/_sweep_trials.html",
}


def _int_param(request: HttpRequest, name: str) -> int | None:
    """A whole number from the query string; None when absent, malformed or beyond what a
    database integer holds (a lookup with such a number raises OverflowError on SQLite).
    """
    raw = request.GET.get(name, "")
    try:
        value = int(raw) if raw != "" else None
    except ValueError:
        return None
    return value if value is None or INTEGER_MIN <= value <= INTEGER_MAX else None


# ---- starting a run --------------------------------------------------------------------


# Secret inputs are posted here: keep them out of Django's error reports.
@sensitive_post_parameters()
@login_required
def run_create_view(request: HttpRequest, pipeline_id: int) -> HttpResponse:
    pipeline = selectors.pipeline_for_user(user=request.user, pipeline_id=pipeline_id)
    if not selectors.user_can_run(request.user, pipeline):
        raise PermissionDenied("Viewers cannot start runs")
    version = pipeline.latest_version
    if version is None:
        messages.warning(request, "This pipeline has no steps yet: add a step before running it.")
        return render(request, "runs/run_form.html", {"pipeline": pipeline, "version": None, "nav": "pipelines"})
    spec = version_spec(version)
    form = RunForm(request.POST or None, spec=spec, team_secret_names=team_secrets.secret_names(pipeline.team_id))
    if request.method == "POST" and form.is_valid():
        try:
            run = run_create(
                version=version,
                user=request.user,
                inputs=form.cleaned_data["inputs"],
                force_rerun=form.cleaned_data["force_rerun"],
                force_steps=form.cleaned_data["force_steps"],
                timeout_s=form.cleaned_data["timeout_s"],
            )
        except RunInputError as exc:
            form.add_input_errors(exc)
        else:
            return redirect(run.get_absolute_url())
    context = {"pipeline": pipeline, "version": version, "spec": spec, "form": form, "nav": "pipelines"}
    return render(request, "runs/run_form.html", context)


# ---- the runs list -----------------------------------------------------------------------


@login_required
@require_GET
def run_list(request: HttpRequest) -> HttpResponse:
    pipeline_id = _int_param(request, "pipeline")
    state = request.GET.get("state", "")
    if state not in RunState.values:
        state = ""
    runs = selectors.run_list(user=request.user, pipeline_id=pipeline_id, state=state or None)
    metric_text = request.GET.get("metric", "")
    metric_error = ""
    try:
        metric_filter = compare.parse_metric_filter(metric_text)
    except compare.FilterError as exc:
        metric_filter, metric_error = None, str(exc)
    if metric_filter is not None:
        runs = compare.filter_runs(runs, metric_filter)
    page = Paginator(runs, RUNS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    page_runs = selectors.with_step_counts(list(page.object_list))
    metric_names = compare.key_metric_names(
        [r.pk for r in page_runs], first=metric_filter.name if metric_filter else None
    )
    context = {
        "page": page,
        "runs": compare.attach_key_metrics(page_runs, metric_names),
        "metric_names": metric_names,
        "metric_text": metric_text,
        "metric_filter": metric_filter,
        "metric_error": metric_error,
        "compare": {"min": compare.MIN_COMPARE, "max": compare.MAX_COMPARE},
        "pipelines": selectors.pipeline_choices(user=request.user),
        "states": RunState.values,
        "selected_pipeline": pipeline_id,
        "one_pipeline": pipeline_id is not None,
        "selected_state": state,
        "query": query.urlencode(),
        "nav": "runs",
    }
    return render(request, "runs/run_list.html", context)


@login_required
@require_GET
def pipeline_runs(request: HttpRequest, pipeline_id: int) -> HttpResponse:
    """A pipeline's Runs tab: its runs, newest first, under the pipeline's own header."""
    pipeline = selectors.pipeline_for_user(user=request.user, pipeline_id=pipeline_id)
    runs = selectors.run_list(user=request.user, pipeline_id=pipeline.pk)
    page = Paginator(runs, RUNS_PER_PAGE).get_page(request.GET.get("page"))
    can_run = selectors.user_can_run(request.user, pipeline)
    page_runs = selectors.with_step_counts(list(page.object_list))
    metric_names = compare.key_metric_names([r.pk for r in page_runs])
    context = {
        "pipeline": pipeline,
        "page": page,
        "runs": compare.attach_key_metrics(page_runs, metric_names),
        "metric_names": metric_names,
        "compare": {"min": compare.MIN_COMPARE, "max": compare.MAX_COMPARE},
        "can_edit": can_run,
        "tab": "runs",
        "nav": "pipelines",
        "empty_text": "No runs of this pipeline yet."
        + (" Start one with the Run button above." if can_run and pipeline.latest_version_id else ""),
    }
    return render(request, "runs/pipeline_runs.html", context)


# ---- the run page -------------------------------------------------------------------------


def _run_context(request: HttpRequest, run, selected_name: str | None) -> dict:
    if selected_name and not selectors.valid_name(selected_name):
        raise Http404("No such step")
    # Every step as a light summary; whole rows only for the steps on screen.
    steps = selectors.step_summaries(run)
    chosen = steps if request.GET.get("all") else selectors.most_telling(steps, MAX_STEP_ROWS)
    selected = next((s for s in steps if s.name == selected_name), None) if selected_name else None
    if selected_name and selected is None:
        raise Http404("No such step")
    if selected is None:
        selected = selectors.default_selected_step(steps)
    rows = selectors.run_steps(run, ids=[s.id for s in chosen] + ([selected.id] if selected else []))
    shown = [rows[s.id] for s in chosen]
    selected = rows[selected.id] if selected else None
    log_page = selectors.log_page(selected) if selected else None
    metrics = selectors.step_metrics(selected) if selected else []
    return {
        "run": run,
        "steps": steps,
        "rows": selectors.step_rows(shown),
        "hidden_rows": len(steps) - len(shown),
        "progress": selectors.progress(steps),
        "timeline": selectors.timeline(run, shown),
        "selected": selected,
        "outputs": selectors.step_outputs(selected) if selected else [],
        "sweep": _sweep(run, selected),
        "reuse": reuse.explain(selected) if selected else None,
        "metrics": metrics,
        "metrics_hidden": selectors.step_metrics_hidden(selected, metrics) if selected else 0,
        "params": compare.step_params(selected) if selected else [],
        "log_page": log_page,
        "can_run": selectors.user_can_run(request.user, run.pipeline),
        "is_active": selectors.run_is_active(run),
        "can_retry_failed": selectors.run_can_retry_failed(run, steps),
    }


def _sweep(run, selected) -> sweep_selectors.SweepTable | None:
    step = version_spec(run.version).jobs.get(selected.name) if selected else None
    return sweep_selectors.sweep_table(selected, step) if step is not None else None


# Above this many steps the page lists the most telling steps first and draws the graph
# only once it has been laid out (dot takes tens of seconds at 5,000 nodes).
MAX_STEP_ROWS = 100


def _graph(run, query=None) -> tuple[str, str, dict[str, str], dict[str, list[str]]]:
    """(svg, note, step name -> node id, fan-out group id -> its steps); the page falls back to
    the table when there is no SVG.

    The SVG is the version's, without states (the page's script paints them), so it is laid
    out once per version and cached; only the run id in the step links differs per run.
    """
    spec = version_spec(run.version)
    node_ids = dag.node_ids(spec)
    expansion = dag.expand_from_query(query)
    groups = dag.graph_groups(spec, expand=expansion["expand"], collapse=expansion["collapse"])
    for group_id, names in groups.items():
        node_ids.update(dict.fromkeys(names, group_id))
    placeholder = selectors.run_graph_placeholder()
    dot = selectors.run_graph_dot(
        run.version.pk,
        run.version.content_hash,
        placeholder,
        tuple(sorted(expansion["expand"])),
        tuple(sorted(expansion["collapse"])),
    )
    if len(spec.jobs) > graph.LARGE_GRAPH_STEPS and not graph.svg_cached(dot):
        graph.render_svg_in_background(dot)
        return "", f"the graph of {len(spec.jobs):,} steps is being drawn; reload in a minute", node_ids, groups
    try:
        svg = graph.render_svg(dot)
    except graph.GraphRenderError as exc:
        return "", f"the graph could not be drawn ({exc})", node_ids, groups
    return svg.replace(placeholder, selectors.run_step_url_prefix(run.pk)), "", node_ids, groups


@login_required
@require_GET
def run_detail(request: HttpRequest, run_id: int, step_name: str | None = None) -> HttpResponse:
    run = selectors.run_for_user(user=request.user, run_id=run_id)
    context = _run_context(request, run, step_name)
    svg, graph_error, node_ids, groups = _graph(run, request.GET)
    context.update(
        svg=svg,
        graph_error=graph_error,
        node_ids=node_ids,
        state_colors=states.STATE_FILLS,
        nav="runs",
        # The live charts stop where the server's chart JSON stops (runs/compare.py).
        max_charts=compare.MAX_CHARTS,
        max_chart_points=compare.MAX_CHART_POINTS,
        page_config={
            "run": run.pk,
            "ws": f"/ws/runs/{run.pk}/",
            "parts": reverse("run_parts", args=[run.pk]),
            "selected": context["selected"].name if context["selected"] else None,
            "log": reverse("step_log", args=[run.pk, context["selected"].name]) if context["selected"] else None,
            "nodes": node_ids,
            "groups": groups,
            "display": states.page_display(),
            "states": {s.name: [s.state, s.attempt] for s in context["steps"]},
            "run_state": run.state,
            "now": timezone.now().isoformat(),
        },
    )
    return render(request, "runs/run_detail.html", context)


@login_required
@require_GET
def run_parts(request: HttpRequest, run_id: int) -> JsonResponse:
    """The run page's parts as HTML, rendered from the same partials as the page itself."""
    run = selectors.run_for_user(user=request.user, run_id=run_id)
    context = _run_context(request, run, request.GET.get("step") or None)
    html = {key: render_to_string(template, context, request=request) for key, template in RUN_PARTS.items()}
    # The states these parts show: the page refreshes again while an event said something newer.
    states = {s.name: [s.state, s.attempt] for s in context["steps"]}
    return JsonResponse({"run_state": run.state, "states": states, "now": timezone.now().isoformat(), "parts": html})


@login_required
@require_POST
def run_cancel_view(request: HttpRequest, run_id: int) -> HttpResponse:
    run = selectors.run_for_user(user=request.user, run_id=run_id)
    if not selectors.user_can_run(request.user, run.pipeline):
        raise PermissionDenied("Viewers cannot cancel runs")
    if run_cancel(run=run):
        messages.info(request, f"Canceling run #{run.pk}: running steps stop within a few seconds.")
    else:
        messages.warning(request, f"Run #{run.pk} has already finished.")
    return redirect(run.get_absolute_url())


@login_required
@require_POST
def run_rerun_view(request: HttpRequest, run_id: int) -> HttpResponse:
    run = selectors.run_for_user(user=request.user, run_id=run_id)
    if not selectors.user_can_run(request.user, run.pipeline):
        raise PermissionDenied("Viewers cannot rerun")
    mode = request.POST.get("mode", "all")
    if mode not in ("all", "failed", "from"):
        mode = "all"
    from_step = request.POST.get("step") if mode == "from" else None
    try:
        new_run = run_rerun(run=run, user=request.user, mode=mode, from_step=from_step)
    except RunInputError as exc:
        messages.error(request, f"Cannot rerun: {exc}")
        return redirect(run.get_absolute_url())
    return redirect(new_run.get_absolute_url())


# ---- logs and outputs ------------------------------------------------------------------------


@login_required
@require_GET
def step_log(request: HttpRequest, run_id: int, step_name: str) -> HttpResponse:
    run = selectors.run_for_user(user=request.user, run_id=run_id)
    step_run = selectors.step_run_for_run(run=run, name=step_name)
    download = request.GET.get("download")
    if download:
        # The whole log, every line of every attempt, streamed: as text, or `download=gz` as gzip.
        compressed = download == "gz"
        response = downloads.StreamedResponse(
            logs.full_log(step_run, compressed=compressed),
            content_type="application/gzip" if compressed else "text/plain; charset=utf-8",
        )
        filename = f"run-{run.pk}-{downloads.safe_filename(step_name)}.log" + (".gz" if compressed else "")
        response["Content-Disposition"] = downloads.disposition(filename)
        return response
    page = selectors.log_page(
        step_run,
        after_seq=_int_param(request, "after_seq"),
        before_seq=_int_param(request, "before_seq"),
        limit=_int_param(request, "limit") or selectors.LOG_TAIL_LINES,
    )
    # Where the lines a page leaves out are.
    download_url = reverse("step_log", args=[run.pk, step_run.name]) + "?download=1"
    return JsonResponse({**page.as_json(), "download": request.build_absolute_uri(download_url)})


@login_required
@require_GET
def step_output_download(request: HttpRequest, run_id: int, step_name: str, output_name: str) -> HttpResponse:
    run = selectors.run_for_user(user=request.user, run_id=run_id)
    step_run = selectors.step_run_for_run(run=run, name=step_name)
    return downloads.output_response(run, step_run, output_name)
