"""Garbage collection of the artifact store: what no step output, attempt log, data version or
model version references goes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from runs import artifacts, data_assets
from runs.models import Artifact, StepState

# A worker stores an output's (or a whole log's) files before it records the row that
# references them; anything younger than this may be such an object in flight.
GRACE = timedelta(hours=1)


@dataclass
class GcReport:
    artifacts: list[str] = field(default_factory=list)
    orphan_dirs: list[str] = field(default_factory=list)
    # Data uploads abandoned before they were made a version (runs/data_views.py).
    uploads: list[str] = field(default_factory=list)
    bytes_freed: int = 0


def collect(*, dry_run: bool) -> GcReport:
    report = GcReport()
    cutoff = timezone.now() - GRACE
    unreferenced = Artifact.objects.filter(
        step_outputs__isnull=True,
        attempt_logs__isnull=True,
        data_versions__isnull=True,
        remote_inputs__isnull=True,
        model_versions__isnull=True,
        created_at__lt=cutoff,
    ).exclude(sweep_trials__step_run__state=StepState.RUNNING)
    for artifact in unreferenced:
        report.artifacts.append(artifact.sha256)
        report.bytes_freed += artifact.size
        if not dry_run:
            artifacts.remove_artifact_files(artifact)
            artifact.delete()

    # Objects without a row: a worker died between storing files and recording them, or
    # (in an object store) an upload that never wrote its completion marker.
    store = artifacts.store()
    known = set(Artifact.objects.values_list("sha256", flat=True))
    for sha, modified in store.stored().items():
        if sha in known or time.time() - modified < GRACE.total_seconds():
            continue
        report.orphan_dirs.append(sha)
        if not dry_run:
            store.remove(sha)
    if not dry_run:
        store.clean_staging(older_than_s=GRACE.total_seconds())
    report.uploads = data_assets.uploads_clean(dry_run=dry_run)
    return report
