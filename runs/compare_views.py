"""Metric charts' data and run comparison: the run page's series as JSON, and /runs/compare/."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from runs import compare, selectors
from runs.models import Metric


@login_required
@require_GET
def run_metrics(request: HttpRequest, run_id: int) -> JsonResponse:
    """Every metric of the run as chart series: the run page draws them, and fetches them again
    to converge after events it may have missed."""
    run = selectors.run_for_user(user=request.user, run_id=run_id)
    charts = compare.run_charts(run)
    hidden = compare.hidden_chart_count(Metric.objects.filter(step_run__run=run), charts)
    return JsonResponse({"run": run.pk, "charts": charts, "charts_hidden": hidden})


@login_required
@require_GET
def run_compare(request: HttpRequest) -> HttpResponse:
    try:
        ids = compare.parse_ids(request.GET.get("ids", ""))
    except compare.CompareError as exc:
        # Not an error page: what to pick, like an empty state (the runs list links here). Too few
        # runs is that empty state alone; the alert is for a pick that is wrong.
        context = {
            "pick": True,
            "error": "" if isinstance(exc, compare.TooFewRuns) else str(exc),
            "nav": "runs",
            "min": compare.MIN_COMPARE,
            "max": compare.MAX_COMPARE,
        }
        return render(request, "runs/compare.html", context)
    comparison = compare.compare(user=request.user, ids=ids)
    context = {"cmp": comparison, "charts": comparison.charts, "nav": "runs"}
    return render(request, "runs/compare.html", context)
