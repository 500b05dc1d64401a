"""The Workers page: every step worker of the install, live first, and draining one."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from runs import worker_status
from runs.models import Worker


def _check_access(request: HttpRequest) -> None:
    # Workers are the install's, not a team's: nothing to hide by a 404, only a role to have.
    if not worker_status.user_sees_workers(request.user):
        raise PermissionDenied("Only staff and team admins see the workers")


def _check_manages(request: HttpRequest) -> None:
    if not worker_status.user_manages_workers(request.user):
        raise PermissionDenied("Only staff drain and undrain workers: each takes every team's steps")


@login_required
@require_GET
def worker_list(request: HttpRequest) -> HttpResponse:
    _check_access(request)
    context = {"page": worker_status.workers_page(user=request.user), "nav": "workers"}
    # The live refresh asks for the list alone, rendered by the same partial as the page.
    template = "runs/_workers.html" if request.headers.get("HX-Request") else "runs/workers.html"
    return render(request, template, context)


@login_required
@require_POST
def worker_drain_view(request: HttpRequest, worker_id: int) -> HttpResponse:
    _check_manages(request)
    worker = get_object_or_404(Worker, pk=worker_id)
    if worker_status.worker_drain(worker=worker, user=request.user):
        messages.success(request, f"Worker {worker.name} finishes its current step, then takes no more.")
    else:
        messages.info(request, f"Worker {worker.name} is already draining or has stopped.")
    return redirect("worker_list")


@login_required
@require_POST
def worker_undrain_view(request: HttpRequest, worker_id: int) -> HttpResponse:
    _check_manages(request)
    worker = get_object_or_404(Worker, pk=worker_id)
    if worker_status.worker_undrain(worker=worker):
        messages.success(request, f"Worker {worker.name} takes steps again.")
    else:
        messages.info(request, f"Worker {worker.name} is not draining, or has stopped.")
    return redirect("worker_list")
