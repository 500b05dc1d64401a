"""Deleting a pipeline: its versions and whatever belongs to it go too; artifact files stay for the GC.

What belongs to a pipeline is every row pointing at it with on_delete=CASCADE: its runs (with
their steps, the log lines kept in the database, metrics, transitions), its template, its
endpoints and schedules, its notifications. They are deleted first, then the pipeline with its
versions: several of them protect the versions they ran or published (PROTECT), so deleting the
pipeline alone would be refused. Found through the model graph, so a model added later that
cascades from Pipeline is covered without a change here.

The artifacts its steps made are content-addressed and may be shared with other runs (reuse):
they stay, and `manage.py pipelines gc` removes those nothing references any more. A pipeline
with a run still queued or running is refused: its worker would write rows for a run that no
longer exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import models, transaction
from django.db.models import ProtectedError, RestrictedError

from pipelines_ui.models import Pipeline, PipelineVersion, Template
from runs.models import RUN_TERMINAL, Run


class PipelineDeleteError(Exception):
    """Why the pipeline cannot be deleted now, for the person who asked."""


@dataclass(frozen=True)
class DeleteSummary:
    versions: int
    active_runs: int
    template: Template | None
    template_clones: int
    # (what, how many) for every kind of row that goes with the pipeline, runs first.
    belongings: list[tuple[str, int]] = field(default_factory=list)


def _belongings(pipeline: Pipeline) -> list[models.QuerySet]:
    """Querysets of the rows that cascade from the pipeline, other than its versions; runs first."""
    querysets = []
    for relation in Pipeline._meta.related_objects:
        if relation.related_model is PipelineVersion or relation.on_delete is not models.CASCADE:
            continue
        querysets.append(relation.related_model._base_manager.filter(**{relation.field.name: pipeline}))
    return sorted(querysets, key=lambda qs: qs.model is not Run)


def pipeline_delete_summary(pipeline: Pipeline) -> DeleteSummary:
    """What deleting the pipeline takes with it, for the confirmation page."""
    template = Template.objects.filter(pipeline=pipeline).first()
    clones = Pipeline.objects.filter(origin__template=template).count() if template else 0
    belongings = []
    for qs in _belongings(pipeline):
        if qs.model is Template:
            continue  # named on its own, with the clones that follow it
        count = qs.count()
        if count:
            meta = qs.model._meta
            belongings.append((str(meta.verbose_name if count == 1 else meta.verbose_name_plural), count))
    return DeleteSummary(
        versions=pipeline.versions.count(),
        active_runs=Run.objects.filter(pipeline=pipeline).exclude(state__in=RUN_TERMINAL).count(),
        template=template,
        template_clones=clones,
        belongings=belongings,
    )


@transaction.atomic
def pipeline_delete(*, pipeline: Pipeline) -> None:
    # A run being started holds the pipeline's row (runs/services.py): this waits for it to be
    # written, then refuses below (it is active); a run started meanwhile waits for this
    # transaction, then is refused (PipelineDeleted), rather than slip in between.
    locked = Pipeline.objects.select_for_update().filter(pk=pipeline.pk).first()
    if locked is None:
        return
    active = Run.objects.filter(pipeline=locked).exclude(state__in=RUN_TERMINAL).count()
    if active:
        them, they, finish = ("them", "they", "finish") if active != 1 else ("it", "it", "finishes")
        raise PipelineDeleteError(
            f"{locked.name} has {active} run{'s' if active != 1 else ''} still queued or running:"
            f" cancel {them} or wait until {they} {finish}, then delete the pipeline."
        )
    try:
        for qs in _belongings(locked):
            qs.delete()
        locked.delete()
    except (ProtectedError, RestrictedError) as exc:
        blocking = getattr(exc, "protected_objects", None) or getattr(exc, "restricted_objects", ())
        kinds = sorted({str(obj._meta.verbose_name_plural) for obj in blocking})
        raise PipelineDeleteError(
            f"{locked.name} is still used by {', '.join(kinds) or 'other objects'}: remove those first."
        ) from None
