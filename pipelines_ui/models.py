"""Authoring: teams, pipelines and their immutable versions; what teams share (templates, components)."""

from __future__ import annotations

import unicodedata

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse

from pipelines_ui.fields import OrderedJSONField


class Role(models.TextChoices):
    VIEWER = "viewer"
    EDITOR = "editor"
    ADMIN = "admin"


def validate_team_name(name: str) -> None:
    """A team's name is a segment of URLs (`/api/v1/endpoints/{team}/{name}/runs/`): no slash,
    and nothing a person cannot see or type."""
    if "/" in name or "\\" in name:
        raise ValidationError("A team name cannot hold a slash.")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise ValidationError("A team name cannot hold tabs, line breaks or other control characters.")
    if name != name.strip():
        raise ValidationError("A team name cannot start or end with a space.")
    if name in (".", ".."):
        raise ValidationError("A team name cannot be . or .. (clients drop them from URLs).")


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True, validators=[validate_team_name])
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="teams")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.EDITOR)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="unique_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class PipelineQuerySet(models.QuerySet["Pipeline"]):
    def for_user(self, user) -> PipelineQuerySet:
        if not user.is_authenticated:
            return self.none()
        return self.filter(team__memberships__user=user)


class Pipeline(models.Model):
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="pipelines")
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)
    latest_version = models.ForeignKey(
        "PipelineVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # A clone made with "Use template": the template version it follows (moved on by "apply").
    origin = models.ForeignKey(
        "TemplateVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="clones"
    )

    objects = PipelineQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="unique_pipeline_name_per_team")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("pipeline_detail", args=[self.pk])


class PipelineVersion(models.Model):
    """An immutable snapshot: the normalized spec plus the files of every step's code folder.

    `spec` is the pipeline in the interchange format's dict form (what `pipeline.yml`
    plus the component files hold once normalized); `files` maps
    the spec's file keys (`code/<step>/<path>`, `data/<input>/<path>`) to FileBlob sha256s.
    """

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    spec = OrderedJSONField()
    files = models.JSONField(default=dict)
    content_hash = models.CharField(max_length=64, db_index=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    message = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint(fields=["pipeline", "number"], name="unique_version_number")]

    def __str__(self) -> str:
        return f"{self.pipeline.name} v{self.number}"


class FileBlob(models.Model):
    """Content-addressed bytes of code files; versions share unchanged files."""

    sha256 = models.CharField(max_length=64, primary_key=True)
    content = models.BinaryField()
    size = models.PositiveIntegerField()

    def __str__(self) -> str:
        return self.sha256


class Invitation(models.Model):
    """A link that makes whoever opens it (signed in, or signing up) a member of a team.

    Only the token's sha256 is stored: the link is shown once, to the admin who made it.
    """

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.EDITOR)
    token_sha256 = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} to {self.team} ({self.role})"


class TeamSecret(models.Model):
    """A value the team's admins keep for its runs (a registry token, a deploy key).

    A run's secret input with no value given takes the team secret of the same name
    (pipelines_ui.team_secrets). `value` is a Fernet token (runs.secrets): never rendered, never
    returned by the API; only the name and who last set it are shown.
    """

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="secrets")
    name = models.CharField(max_length=100)
    value = models.TextField(editable=False)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="unique_team_secret")]

    def __str__(self) -> str:
        return f"{self.team}: {self.name}"


class Visibility(models.TextChoices):
    TEAM = "team", "My team"
    INSTANCE = "instance", "Everyone on this instance"


class Template(models.Model):
    """A pipeline published for others to start from; each publish adds a TemplateVersion."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="templates")
    pipeline = models.OneToOneField(Pipeline, on_delete=models.CASCADE, related_name="template")
    title = models.CharField(max_length=200)
    # Markdown, rendered through pipelines_ui.markdown (no raw HTML, no unsafe links).
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list)
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.TEAM)
    times_used = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    latest_version = models.ForeignKey(
        "TemplateVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return self.title


class TemplateVersion(models.Model):
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    pipeline_version = models.ForeignKey(PipelineVersion, on_delete=models.PROTECT, related_name="+")
    # Pipeline input name -> what it means, shown on the template's page and its "use" form.
    parameter_descriptions = models.JSONField(default=dict)
    published_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["template", "number"], name="unique_template_version_number"),
            models.UniqueConstraint(fields=["template", "pipeline_version"], name="unique_template_pipeline_version"),
        ]

    def __str__(self) -> str:
        return f"{self.template.title} v{self.number}"


class Component(models.Model):
    """A registered command component (`azureml:NAME:VERSION`): its YAML body and its code's files.

    `spec` is the component's mapping as the loader reads a component file (command, inputs,
    outputs, environment, ...; `code` left out); `files` maps each code file's relative path to
    a FileBlob sha256. Versions are immutable once registered.
    """

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="components")
    name = models.CharField(max_length=255)
    version = models.CharField(max_length=64)
    display_name = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    spec = OrderedJSONField()
    files = models.JSONField(default=dict)
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.TEAM)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name", "version"], name="unique_component_version_per_team")
        ]

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"
