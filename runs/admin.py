from django import forms
from django.contrib import admin
from django.db import models

from runs.models import ComputeTarget, Run, StepRun, Worker


@admin.register(ComputeTarget)
class ComputeTargetAdmin(admin.ModelAdmin):
    list_display = ("name", "queue", "aliases", "is_default", "isolation", "network", "description")
    search_fields = ("name", "queue")
    # Conda definitions are long JSON: wide enough to read them.
    formfield_overrides = {models.JSONField: {"widget": forms.Textarea(attrs={"cols": 110, "rows": 6})}}


class StepRunInline(admin.TabularInline):
    model = StepRun
    fields = ("name", "state", "attempt", "started_at", "finished_at", "exit_code", "reason")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    """Read-only: states change only through runs.transitions."""

    list_display = ("id", "pipeline", "version", "state", "created_by", "created_at", "finished_at")
    list_filter = ("state",)
    list_select_related = ("pipeline", "version", "created_by")
    inlines = [StepRunInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    """Read-only: each worker writes its own row; drain it from the Workers page."""

    list_display = ("name", "host", "targets", "state", "drain", "steps_done", "started_at", "heartbeat_at")
    list_filter = ("state", "drain", "host")
    search_fields = ("name", "host")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
