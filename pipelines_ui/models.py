"""Authoring: teams, pipelines and their immutable versions."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse

from pipelines_ui.fields import OrderedJSONField


class Role(models.TextChoices):
    VIEWER = "viewer"
    EDITOR = "editor"
    ADMIN = "admin"


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
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
