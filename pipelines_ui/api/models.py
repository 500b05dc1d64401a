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


# ---- published endpoints (Azure ML's PipelineEndpoint) ------------------------------------


class Endpoint(models.Model):
    """A stable name to start runs by: `POST /api/v1/endpoints/{team}/{name}/runs/`."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="endpoints")
    name = models.SlugField(max_length=100, allow_unicode=False)
    description = models.TextField(blank=True)
    pipeline = models.ForeignKey("pipelines_ui.Pipeline", on_delete=models.CASCADE, related_name="endpoints")
    default_version = models.ForeignKey("pipelines_ui.PipelineVersion", on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team__name", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="unique_endpoint_name_per_team")]

    def __str__(self) -> str:
        return f"{self.team.name}/{self.name}"


class EndpointVersion(models.Model):
    """A pipeline version the endpoint may run (one of them is its default)."""

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="versions")
    version = models.ForeignKey("pipelines_ui.PipelineVersion", on_delete=models.PROTECT, related_name="+")
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version__number"]
        constraints = [models.UniqueConstraint(fields=["endpoint", "version"], name="unique_endpoint_version")]


class EndpointCall(models.Model):
    """One call of an endpoint: who (user, token), which version, the run it started.

    `idempotency_key`: an `Idempotency-Key` header; the same key on the same endpoint within
    IDEMPOTENCY_WINDOW returns this call's run. The unique constraint is what makes two
    simultaneous calls with one key start one run; expired keys are cleared before a claim.
    """

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="calls")
    version = models.ForeignKey("pipelines_ui.PipelineVersion", on_delete=models.PROTECT, related_name="+")
    run = models.ForeignKey("runs.Run", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    token = models.ForeignKey(ApiToken, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    token_name = models.CharField(max_length=100, blank=True)
    schedule = models.ForeignKey("Schedule", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "idempotency_key"], name="unique_endpoint_idempotency_key")
        ]


# ---- schedules ----------------------------------------------------------------------------


class Catchup(models.TextChoices):
    NONE = "none", "none: skip fire times missed while no scheduler ran"
    LATEST = "latest", "latest: run once for the most recent missed fire time"
    ALL = "all", "all: run every missed fire time"


class Schedule(models.Model):
    """Runs of a pipeline (its latest version) or of an endpoint (its default version), on a cron
    expression in a time zone or every `interval_seconds`."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="schedules")
    name = models.CharField(max_length=100)
    pipeline = models.ForeignKey(
        "pipelines_ui.Pipeline", on_delete=models.CASCADE, null=True, blank=True, related_name="schedules"
    )
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, null=True, blank=True, related_name="schedules")
    cron = models.CharField(max_length=200, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    interval_seconds = models.PositiveIntegerField(null=True, blank=True)
    inputs = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    catchup = models.CharField(max_length=10, choices=Catchup.choices, default=Catchup.LATEST)
    # Runs start as this user (their role is checked at each fire: a demoted owner's schedule stops).
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # Fire times up to this one are handled (fired or skipped); the next is computed from it.
    handled_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["team__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="unique_schedule_name_per_team"),
            models.CheckConstraint(
                condition=models.Q(pipeline__isnull=False, endpoint__isnull=True)
                | models.Q(pipeline__isnull=True, endpoint__isnull=False),
                name="schedule_has_one_target",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ScheduleFire(models.Model):
    """One fire time of a schedule: at most one row, hence one run, however many schedulers run."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="fires")
    fire_time = models.DateTimeField()
    run = models.ForeignKey("runs.Run", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    skipped = models.BooleanField(default=False, help_text="missed while no scheduler ran; not run (catch-up policy)")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-fire_time"]
        constraints = [models.UniqueConstraint(fields=["schedule", "fire_time"], name="unique_schedule_fire_time")]


# ---- notifications: webhooks and email ------------------------------------------------------


class RunEvent(models.TextChoices):
    SUCCEEDED = "run.succeeded"
    FAILED = "run.failed"
    CANCELED = "run.canceled"


class Notification(models.Model):
    """Per pipeline: POST a signed JSON body to `url`, or mail `email`, when a run ends in one of `events`."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook"
        EMAIL = "email"

    pipeline = models.ForeignKey("pipelines_ui.Pipeline", on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.WEBHOOK)
    url = models.URLField(max_length=500, blank=True)
    email = models.EmailField(blank=True)
    # The HMAC-SHA256 key of the `X-Stepwise-Signature` header, encrypted like secret inputs (runs.secrets).
    secret = models.TextField(blank=True)
    events = models.JSONField(default=list)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]


class Delivery(models.Model):
    """One event for one notification: written in the transaction that ends the run (an outbox),
    sent and retried with backoff by the dispatcher, every attempt's outcome kept."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="deliveries")
    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="+")
    event = models.CharField(max_length=20, choices=RunEvent.choices)
    payload = models.JSONField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_index=True)
    # Who is sending it now (a dispatcher's id) and until when: another dispatcher leaves it alone.
    claimed_by = models.CharField(max_length=100, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_status = models.IntegerField(null=True, blank=True)
    last_response = models.TextField(blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["notification", "run", "event"], name="unique_delivery_per_event")
        ]


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    status = models.IntegerField(null=True, blank=True)
    response = models.TextField(blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["number"]


# ---- data triggers ------------------------------------------------------------------------------


class DataTrigger(models.Model):
    """Runs of a pipeline (its latest version) with one data input bound to new data: each version
    added to `asset` (hooked on the version's creation, nothing polled), or what `path` of
    `datastore` holds whenever a poll every `interval_seconds` finds it changed."""

    class Kind(models.TextChoices):
        ASSET = "asset", "a new data asset version"
        DATASTORE_PATH = "datastore_path", "a changed datastore path"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="data_triggers")
    name = models.CharField(max_length=100)
    pipeline = models.ForeignKey("pipelines_ui.Pipeline", on_delete=models.CASCADE, related_name="data_triggers")
    input_name = models.CharField(max_length=255, help_text="the pipeline input the new data is bound to")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.ASSET)
    asset = models.ForeignKey(
        "runs.DataAsset", on_delete=models.CASCADE, null=True, blank=True, related_name="triggers"
    )
    datastore = models.ForeignKey(
        "runs.Datastore", on_delete=models.CASCADE, null=True, blank=True, related_name="triggers"
    )
    path = models.CharField(max_length=1000, blank=True)
    interval_seconds = models.PositiveIntegerField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    # Runs start as this user (their role is checked at each fire, as for schedules).
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # Versions added from this moment on fire (set on creation and on resume: a pause skips).
    armed_at = models.DateTimeField()
    # Datastore paths: when the path was last listed and the hash of that listing ("" before the
    # first look, which only takes the baseline). Both change by compare-and-set, so each change
    # seen starts one run however many schedulers poll.
    checked_at = models.DateTimeField(null=True, blank=True)
    seen = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["team__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="unique_data_trigger_name_per_team"),
            models.CheckConstraint(
                condition=models.Q(kind="asset", asset__isnull=False, datastore__isnull=True)
                | models.Q(kind="datastore_path", asset__isnull=True, datastore__isnull=False),
                name="data_trigger_has_one_source",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class DataTriggerFire(models.Model):
    """One start of a data trigger: for an asset, at most one per version (the unique key)."""

    trigger = models.ForeignKey(DataTrigger, on_delete=models.CASCADE, related_name="fires")
    data_version = models.ForeignKey(
        "runs.DataVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # What the input was bound to, e.g. azureml:digits:2 or azureml://datastores/lake/paths/raw.
    reference = models.CharField(max_length=2000)
    run = models.ForeignKey("runs.Run", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Claimed, its run not started yet: a path's change is claimed in a transaction of its own
    # (the run's copy of the path must not hold the write lock), and one whose process died
    # before starting the run is started by the scheduler's sweep (data_triggers.sweep_pending).
    pending = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["trigger", "data_version"],
                condition=models.Q(data_version__isnull=False),
                name="unique_data_trigger_fire_per_version",
            )
        ]
