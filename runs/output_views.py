"""The run page's outputs browser: a step output's file tree with sizes, a preview, one file or the whole zip."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from runs import artifacts, data_preview, downloads, selectors
from runs.models import StepOutput
from runs.output_tree import tree_rows


def _output_for_user(request: HttpRequest, run_id: int, step_name: str, output_name: str):
    run = selectors.run_for_user(user=request.user, run_id=run_id)
    step_run = selectors.step_run_for_run(run=run, name=step_name)
    # Looked up by name in the database; a file's path is only ever matched against the store's list.
    output = StepOutput.objects.select_related("artifact").filter(step_run=step_run, name=output_name).first()
    if output is None:
        raise Http404("No such output")
    return run, step_run, output


def _sizes(output: StepOutput) -> dict[str, int]:
    try:
        return artifacts.stored_file_sizes(output.artifact)
    except (OSError, artifacts.ArtifactError):
        return {}


@login_required
@require_GET
def step_output_files(request: HttpRequest, run_id: int, step_name: str, output_name: str) -> HttpResponse:
    run, step_run, output = _output_for_user(request, run_id, step_name, output_name)
    sizes = _sizes(output)
    shown = request.GET.get("path")
    preview = data_preview.artifact_preview(
        output.artifact, sorted(sizes), shown if shown in sizes else None, what="this output"
    )
    rows, left_out = tree_rows(sizes, limit=data_preview.MAX_LISTED)
    return render(
        request,
        "runs/step_output_files.html",
        {
            "run": run,
            "step_run": step_run,
            "output": output,
            "rows": rows,
            "left_out": left_out,
            "missing": not sizes,
            "preview": preview,
            "nav": "runs",
        },
    )


@login_required
@require_GET
def step_output_file(request: HttpRequest, run_id: int, step_name: str, output_name: str) -> HttpResponse:
    _run, _step_run, output = _output_for_user(request, run_id, step_name, output_name)
    sizes = _sizes(output)
    # Without a path, the first file, as a data version's file view does (a uri_file's one file).
    rel = request.GET.get("path") or min(sizes, default="")
    if rel not in sizes:
        raise Http404("No such file in this output")
    return downloads.stored_file_response(
        output.artifact, rel, raw=request.GET.get("raw") == "1", inline=request.GET.get("inline") == "1"
    )
