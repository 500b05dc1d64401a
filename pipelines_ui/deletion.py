"""Deleting a pipeline: its versions, its runs' rows and its template go with it; files stay for the GC.

A run's rows (steps, logs kept in the database, metrics, transitions) mean nothing without its
pipeline and version, so they are deleted too rather than protecting the pipeline forever. The
artifacts its steps made are content-addressed and may be shared with other runs (reuse): they
stay, and `manage.py pipelines gc` removes those nothing references any more. A pipeline with a run still
queued or running is refused: its worker would write rows for a run that no longer exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.db.models import ProtectedError, RestrictedError

from pipelines_ui.models import Pipeline, Template
from runs.models import RUN_TERMINAL, Run


class PipelineDeleteError(Exception):
    """Why the pipeline cannot be deleted now, for the person who asked."""


@dataclass(frozen=True)
class DeleteSummary:
    versions: int
    runs: int
    active_runs: int
    template: Template | None
    template_clones: int


def pipeline_delete_summary(pipeline: Pipeline) -> DeleteSummary:
    """What deleting the pipeline takes with it, for the confirmation page."""
    template = Template.objects.filter(pipeline=pipeline).first()
    clones = Pipeline.objects.filter(origin__template=template).count() if template else 0
    runs = Run.objects.filter(pipeline=pipeline)
    return DeleteSummary(
        versions=pipeline.versions.count(),
        runs=runs.count(),
        active_runs=runs.exclude(state__in=RUN_TERMINAL).count(),
        template=template,
        template_clones=clones,
    )


@transaction.atomic
def pipeline_delete(*, pipeline: Pipeline) -> None:
    locked = Pipeline.objects.select_for_update().filter(pk=pipeline.pk).first()
    if locked is None:
        return
    active = Run.objects.filter(pipeline=locked).exclude(state__in=RUN_TERMINAL).count()
    if active:
        raise PipelineDeleteError(
            f"{locked.name} has {active} run{'s' if active != 1 else ''} still queued or running:"
            " cancel {0} or wait until {0} finish{1}, then delete the pipeline.".format(
                "them" if active != 1 else "it", "" if active != 1 else "es"
            )
        )
    try:
        # The template first (its versions protect the pipeline's), then the runs (they protect
        # the versions), then the pipeline with its versions.
        Template.objects.filter(pipeline=locked).delete()
        Run.objects.filter(pipeline=locked).delete()
        locked.delete()
    except (ProtectedError, RestrictedError) as exc:
        blocking = getattr(exc, "protected_objects", None) or getattr(exc, "restricted_objects", ())
        kinds = sorted({str(obj._meta.verbose_name_plural) for obj in blocking})
        raise PipelineDeleteError(
            f"{locked.name} is still used by {', '.join(kinds) or 'other objects'}: remove those first."
        ) from None
