"""Reads of templates: which a user may see, the gallery's search and tag filter, the tag cloud."""

from __future__ import annotations

from collections import Counter

from django.db.models import Q, QuerySet

from pipelines_ui.models import Membership, Template, TemplateVersion, Visibility


def templates_visible_to(user) -> QuerySet[Template]:
    """Published templates of the user's teams, and those shared with the whole instance."""
    if not user.is_authenticated:
        return Template.objects.none()
    teams = Membership.objects.filter(user=user).values("team_id")
    return (
        Template.objects.filter(latest_version__isnull=False)
        .filter(Q(visibility=Visibility.INSTANCE) | Q(team_id__in=teams))
        .select_related("team", "latest_version", "latest_version__pipeline_version")
    )


def template_for_user(user, pk: int) -> Template | None:
    return templates_visible_to(user).filter(pk=pk).first()


def template_search(*, user, query: str = "", tag: str = "") -> QuerySet[Template]:
    """The gallery: `query` in the title, description or tags; `tag` exactly one of the tags."""
    qs = templates_visible_to(user)
    query = query.strip()
    if query:
        qs = qs.filter(Q(title__icontains=query) | Q(description__icontains=query) | Q(tags__icontains=query))
    tag = tag.strip().lower()
    if tag:
        # Tags are stored as a JSON list of strings without quotes in them: the quoted tag
        # in the list's text is an exact match, on PostgreSQL and SQLite alike.
        qs = qs.filter(tags__icontains=f'"{tag}"')
    return qs.order_by("-times_used", "-updated_at", "pk")


def tag_cloud(*, user) -> list[tuple[str, int]]:
    """(tag, how many visible templates have it), most used first."""
    counts: Counter[str] = Counter()
    for tags in templates_visible_to(user).values_list("tags", flat=True):
        counts.update(t for t in tags or [] if isinstance(t, str))
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def template_versions(template: Template) -> QuerySet[TemplateVersion]:
    return template.versions.select_related("pipeline_version", "published_by").order_by("-number")
