"""Garbage collection of the artifact store: what no step output references goes."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from runs import artifacts
from runs.models import Artifact

# A worker stores an output's files before it records the step output that references
# them; anything younger than this may be such an output in flight.
GRACE = timedelta(hours=1)


@dataclass
class GcReport:
    artifacts: list[str] = field(default_factory=list)
    orphan_dirs: list[str] = field(default_factory=list)
    bytes_freed: int = 0


def collect(*, dry_run: bool) -> GcReport:
    report = GcReport()
    cutoff = timezone.now() - GRACE
    unreferenced = Artifact.objects.filter(step_outputs__isnull=True, created_at__lt=cutoff)
    for artifact in unreferenced:
        report.artifacts.append(artifact.sha256)
        report.bytes_freed += artifact.size
        if not dry_run:
            artifacts.remove_artifact_files(artifact)
            artifact.delete()

    objects = artifacts.store_root() / "objects"
    known = set(Artifact.objects.values_list("sha256", flat=True))
    if objects.is_dir():
        for shard in objects.iterdir():
            for folder in shard.iterdir():
                if folder.name in known or time.time() - folder.stat().st_mtime < GRACE.total_seconds():
                    continue
                report.orphan_dirs.append(folder.name)
                if not dry_run:
                    artifacts.remove_tree(folder)
    staging = artifacts.store_root() / "staging"
    if staging.is_dir() and not dry_run:
        for leftover in staging.iterdir():
            if time.time() - leftover.stat().st_mtime > GRACE.total_seconds():
                shutil.rmtree(leftover, ignore_errors=True)
    return report
