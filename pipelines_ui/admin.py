from __future__ import annotations

from django.contrib import admin

from pipelines_ui.models import Membership, Pipeline, PipelineVersion, Team


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "member_count", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]

    @admin.display(description="Members")
    def member_count(self, obj: Team) -> int:
        return obj.memberships.count()


@admin.register(Pipeline)
class PipelineAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "latest_version", "created_by", "updated_at"]
    list_filter = ["team"]
    search_fields = ["name", "description"]
    readonly_fields = ["latest_version", "created_by", "created_at", "updated_at"]


@admin.register(PipelineVersion)
class PipelineVersionAdmin(admin.ModelAdmin):
    """Versions are immutable: the admin shows them and never edits them."""

    list_display = ["pipeline", "number", "author", "created_at", "short_hash"]
    list_filter = ["pipeline__team"]
    search_fields = ["pipeline__name", "content_hash"]
    readonly_fields = ["pipeline", "number", "spec", "files", "content_hash", "author", "message", "created_at"]

    @admin.display(description="Content hash")
    def short_hash(self, obj: PipelineVersion) -> str:
        return obj.content_hash[:12]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
