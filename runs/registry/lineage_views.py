"""Lineage pages: the graph of what made a data version, model version or run and what read it."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from pipelines_ui.graph import GraphRenderError
from runs import selectors
from runs.models import DataVersion, RunDataInput
from runs.registry import lineage
from runs.registry.models import ModelVersion, RunModelInput


def _page(
    request: HttpRequest, found: lineage.Lineage, *, title: str, back: str, nav: str, inputs=None
) -> HttpResponse:
    """`nav`: the navbar section the page belongs to (the lineage of a run is under Runs, of data under Data)."""
    try:
        svg, error = found.svg(), ""
    except GraphRenderError as exc:
        svg, error = "", str(exc)
    return render(
        request,
        "registry/lineage.html",
        {
            "title": title,
            "back": back,
            "svg": svg,
            "error": error,
            "lineage": found,
            "inputs": inputs,
            "nav": nav,
        },
    )


@login_required
def lineage_data(request: HttpRequest, version_id: int) -> HttpResponse:
    version = get_object_or_404(
        DataVersion.objects.filter(asset__team__memberships__user=request.user).select_related("asset"), pk=version_id
    )
    url = f"{version.asset.get_absolute_url()}?v={version.version}"
    return _page(request, lineage.data_lineage(version), title=f"data {version}", back=url, nav="data")


@login_required
def lineage_model(request: HttpRequest, version_id: int) -> HttpResponse:
    version = get_object_or_404(
        ModelVersion.objects.filter(model__team__memberships__user=request.user).select_related("model"), pk=version_id
    )
    return _page(
        request, lineage.model_lineage(version), title=f"model {version}", back=version.get_absolute_url(), nav="models"
    )


@login_required
def lineage_run(request: HttpRequest, run_id: int) -> HttpResponse:
    run = selectors.run_for_user(user=request.user, run_id=run_id)
    inputs = [
        {
            "name": row.name,
            "reference": row.reference,
            "kind": "data",
            "version": row.data_version,
            "url": f"{row.data_version.asset.get_absolute_url()}?v={row.data_version.version}",
        }
        for row in RunDataInput.objects.filter(run=run).select_related("data_version__asset", "data_version__artifact")
    ] + [
        {
            "name": row.name,
            "reference": row.reference,
            "kind": "model",
            "version": row.model_version,
            "url": row.model_version.get_absolute_url(),
        }
        for row in RunModelInput.objects.filter(run=run).select_related(
            "model_version__model", "model_version__artifact"
        )
    ]
    return _page(
        request,
        lineage.run_lineage(run),
        title=f"run #{run.pk}",
        back=run.get_absolute_url(),
        nav="runs",
        inputs=inputs,
    )
