"""API tokens: a user's credential for scripts, limited by scopes, a team and an expiry."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from pipelines_ui.models import Team


class Scope(models.TextChoices):
    READ = "read", "read: see pipelines, runs, logs, outputs"
    RUN = "run", "run: start, cancel and rerun runs"
    WRITE = "write", "write: import pipelines"
    ADMIN = "admin", "admin: endpoints, schedules, webhooks"


class ApiToken(models.Model):
    """Only the token's sha256 is stored; `prefix` (its first characters) tells tokens apart in lists."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    # Limited to one team: every other team's objects are invisible to the token (404).
    team = models.ForeignKey(Team, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    name = models.CharField(max_length=100)
    scopes = models.JSONField(default=list)
    prefix = models.CharField(max_length=16)
    token_sha256 = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())
