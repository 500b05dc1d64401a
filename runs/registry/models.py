"""Registered models (named, versioned, content-hashed files with the producing run's metrics and
parameters), the exact model versions runs read, and deployments that score with a model version.

A model version is immutable like a data version: only `archived`, `description` and `tags`
change, and a version that a run read or a deployment serves cannot be deleted (PROTECT).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse

from runs.models import Artifact, Run, StepOutput

MUTABLE_FIELDS = frozenset({"archived", "description", "tags"})


class Flavour(models.TextChoices):
    CUSTOM = "custom_model"
    MLFLOW = "mlflow_model"


class ModelAsset(models.Model):
    """A team's named model; its files live in immutable ModelVersions."""

    team = models.ForeignKey("pipelines_ui.Team", on_delete=models.CASCADE, related_name="model_assets")
    name = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="unique_model_per_team")]

    def __str__(self) -> str:
        return f"{self.team}/{self.name}"

    def get_absolute_url(self) -> str:
        return reverse("model_detail", args=[self.pk])


class ModelVersion(models.Model):
    class Source(models.TextChoices):
        UPLOAD = "upload"
        PATH = "path"
        STEP_OUTPUT = "step_output"

    model = models.ForeignKey(ModelAsset, on_delete=models.CASCADE, related_name="versions")
    version = models.CharField(max_length=64)
    # Ordering among versions: `@latest` is the newest non-archived one by this number.
    seq = models.PositiveIntegerField()
    flavour = models.CharField(max_length=20, choices=Flavour.choices, default=Flavour.CUSTOM)
    artifact = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="model_versions")
    size = models.BigIntegerField(default=0)
    file_count = models.PositiveIntegerField(default=0)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=dict, blank=True)
    archived = models.BooleanField(default=False)
    source = models.CharField(max_length=12, choices=Source.choices)
    step_output = models.ForeignKey(
        StepOutput, on_delete=models.SET_NULL, null=True, blank=True, related_name="model_versions"
    )
    # Copied, not linked: the producing run may be deleted, the numbers that chose the model stay.
    metrics = models.JSONField(default=dict, blank=True, help_text="{name: last value} of the producing step")
    params = models.JSONField(default=dict, blank=True, help_text="{name: value} of the producing step")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "-seq"]
        constraints = [
            models.UniqueConstraint(fields=["model", "version"], name="unique_model_version"),
            models.UniqueConstraint(fields=["model", "seq"], name="unique_model_version_seq"),
        ]

    def __str__(self) -> str:
        return f"{self.model.name}:{self.version}"

    def save(self, *args, **kwargs) -> None:
        fields = kwargs.get("update_fields")
        if self.pk is not None and (fields is None or not set(fields) <= MUTABLE_FIELDS):
            raise ValueError(f"model version {self} is immutable: only archived, description and tags change")
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return f"{self.model.get_absolute_url()}?v={self.version}"


class RunModelInput(models.Model):
    """The exact model version a run's `mlflow_model`/`custom_model` input resolved to."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="model_inputs")
    name = models.CharField(max_length=255)
    reference = models.CharField(max_length=400, help_text="As written, e.g. azureml:digits-model@latest")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="run_inputs")

    class Meta:
        ordering = ["run", "name"]
        constraints = [models.UniqueConstraint(fields=["run", "name"], name="unique_model_input_per_run")]


class Deployment(models.Model):
    """A model version served at /api/v1/deployments/<team>/<name>/score by its own scorer process."""

    team = models.ForeignKey("pipelines_ui.Team", on_delete=models.CASCADE, related_name="deployments")
    name = models.CharField(max_length=100)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="deployments")
    # The version served before the last swap: what "roll back" returns to.
    previous_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # Written by the deployer only: the scorer now taking requests (`unix:` and its socket's
    # path), which the web view proxies to, and the version it serves. Empty: not started yet.
    address = models.CharField(max_length=1000, blank=True)
    serving_version = models.ForeignKey(
        ModelVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    error = models.TextField(blank=True, help_text="Why the last scorer could not start")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["team", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="unique_deployment_per_team")]

    def __str__(self) -> str:
        return f"{self.team}/{self.name}"

    def get_absolute_url(self) -> str:
        return reverse("deployment_detail", args=[self.pk])


class ScoringRequest(models.Model):
    """One scoring request: who answered it, how, how fast."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="requests")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.SET_NULL, null=True, related_name="+")
    status = models.PositiveSmallIntegerField()
    rows = models.PositiveIntegerField(default=0)
    latency_ms = models.FloatField()
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
