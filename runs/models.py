"""Execution: compute targets, runs, step runs, their artifacts, logs and metrics.

The status enums and the only table of legal transitions come from stepwise/states.py; every
status write goes through `runs.services.step_run_transition` / `run_transition`.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse

from pipelines_ui.models import Pipeline
from stepwise import states

# The enums, the transition table and the terminal sets are the Django-free core's
# (stepwise/states.py); the model fields take them as TextChoices.
StepState = models.TextChoices("StepState", [(s.name, s.value) for s in states.StepState])
RunState = models.TextChoices("RunState", [(s.name, s.value) for s in states.RunState])
STEP_TRANSITIONS = states.STEP_TRANSITIONS
RUN_TRANSITIONS = states.RUN_TRANSITIONS
STEP_DONE = states.STEP_DONE
STEP_TERMINAL = states.STEP_TERMINAL
RUN_TERMINAL = states.RUN_TERMINAL


class Isolation(models.TextChoices):
    SANDBOX = "sandbox", "sandbox (bubblewrap: the step sees only its own files)"
    NONE = "none", "none (the step runs as the worker, seeing all it sees: single-user installs only)"


class ComputeTarget(models.Model):
    """A named place to run steps: one RQ queue, served by one or more workers."""

    name = models.CharField(max_length=100, unique=True)
    aliases = models.JSONField(default=list, blank=True, help_text="Other names that resolve here, e.g. cpu-cluster")
    queue = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=255, blank=True)
    is_default = models.BooleanField(default=False)
    isolation = models.CharField(
        max_length=10,
        choices=Isolation.choices,
        default=Isolation.SANDBOX,
        help_text="How steps are isolated from the server, the worker and each other (runs/sandbox.py)",
    )
    network = models.BooleanField(
        default=True,
        help_text="Steps may open outbound connections (never to this host's loopback services)",
    )
    environment_variables = models.JSONField(
        default=dict, blank=True, help_text='Variables every step of this target gets, e.g. {"HF_HOME": "/data/hf"}'
    )
    environments = models.JSONField(
        default=dict,
        blank=True,
        help_text="Named environments this target builds: a name (or NAME:VERSION) and its conda file's content, "
        'e.g. {"sklearn-1.5": {"dependencies": ["python=3.11", {"pip": ["scikit-learn==1.5.2"]}]}}. A step '
        "naming one (azureml:sklearn-1.5@latest, a registry's azureml://registries/.../environments/sklearn-1.5/...) "
        "runs in a virtual environment built from it; other names run in this target's own Python.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from runs.environments import definition_problems

        problems = definition_problems(self.environments)
        if problems:
            raise ValidationError({"environments": problems})


class RunQuerySet(models.QuerySet["Run"]):
    def for_user(self, user) -> RunQuerySet:
        if not user.is_authenticated:
            return self.none()
        # A subquery, not a join: the runs list pages over every visible run by id.
        return self.filter(pipeline__in=Pipeline.objects.for_user(user).values("pk"))


class Run(models.Model):
    pipeline = models.ForeignKey("pipelines_ui.Pipeline", on_delete=models.CASCADE, related_name="runs")
    version = models.ForeignKey("pipelines_ui.PipelineVersion", on_delete=models.PROTECT, related_name="runs")
    state = models.CharField(max_length=10, choices=RunState.choices, default=RunState.QUEUED, db_index=True)
    inputs = models.JSONField(default=dict, blank=True)
    # `{input name: Fernet token}` of the run's secret inputs (runs.secrets); never in `inputs`.
    # Not editable, so the admin does not show it either.
    secrets = models.JSONField(default=dict, blank=True, editable=False)
    # The secret inputs among those that took the team's secret of their name (no value was
    # given): a rerun takes them from the team again, so that a rotated token reaches it.
    team_secrets = models.JSONField(default=list, blank=True, editable=False)
    force_rerun = models.BooleanField(default=False)
    continue_on_step_failure = models.BooleanField(default=False)
    cancel_requested = models.BooleanField(default=False)
    timeout_s = models.PositiveIntegerField(null=True, blank=True, help_text="Fail the run after this many seconds")
    timed_out = models.BooleanField(default=False)
    rerun_of = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="reruns")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["pipeline", "-id"]), models.Index(fields=["state", "-id"])]

    def __str__(self) -> str:
        return f"run #{self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("run_detail", args=[self.pk])

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class StepRun(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    name = models.CharField(max_length=255)
    display_name = models.CharField(max_length=255, blank=True)
    state = models.CharField(max_length=10, choices=StepState.choices, default=StepState.PENDING, db_index=True)
    attempt = models.PositiveIntegerField(default=0)
    max_retries = models.PositiveIntegerField(default=0)
    timeout_s = models.PositiveIntegerField(null=True, blank=True)
    queue = models.CharField(max_length=100)
    force = models.BooleanField(default=False, help_text="Execute even when an earlier run could be reused")
    fingerprint = models.CharField(max_length=64, blank=True, db_index=True)
    fingerprint_parts = models.JSONField(default=dict, blank=True)
    reused_from = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    log_lines = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["run", "name"], name="unique_step_per_run")]
        indexes = [models.Index(fields=["fingerprint", "state"])]

    def __str__(self) -> str:
        return f"{self.name} of run #{self.run_id}"

    @property
    def label(self) -> str:
        return self.display_name or self.name

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class Transition(models.Model):
    """Audit trail: one row per state change of a run or a step run."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="transitions")
    step_run = models.ForeignKey(StepRun, on_delete=models.CASCADE, null=True, blank=True, related_name="transitions")
    old = models.CharField(max_length=10)
    new = models.CharField(max_length=10)
    attempt = models.PositiveIntegerField(default=0)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]


class Artifact(models.Model):
    """Content-addressed output files: a file, or a folder hashed over its manifest."""

    class Kind(models.TextChoices):
        FILE = "uri_file"
        FOLDER = "uri_folder"

    sha256 = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    size = models.BigIntegerField(default=0)
    file_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.sha256[:12]


class StepOutput(models.Model):
    step_run = models.ForeignKey(StepRun, on_delete=models.CASCADE, related_name="outputs")
    name = models.CharField(max_length=255)
    artifact = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="step_outputs")

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["step_run", "name"], name="unique_output_per_step")]


class LogChunk(models.Model):
    """A batch of consecutive log lines of one attempt; `seq` is the first line's number.

    The database keeps the first and the last lines of an attempt (runs/logs.py); an `omitted`
    row, without text, stands for the `line_count` lines between them, which only its
    AttemptLog holds.
    """

    step_run = models.ForeignKey(StepRun, on_delete=models.CASCADE, related_name="log_chunks")
    attempt = models.PositiveIntegerField()
    seq = models.PositiveIntegerField()
    line_count = models.PositiveIntegerField()
    text = models.TextField()
    omitted = models.BooleanField(default=False)

    class Meta:
        ordering = ["seq"]
        constraints = [models.UniqueConstraint(fields=["step_run", "seq"], name="unique_log_seq")]


class AttemptLog(models.Model):
    """The whole log of one attempt, every line (secrets masked), gzipped in the artifact store."""

    step_run = models.ForeignKey(StepRun, on_delete=models.CASCADE, related_name="attempt_logs")
    attempt = models.PositiveIntegerField()
    first_seq = models.PositiveIntegerField(help_text="The number of its first line in the step's log")
    line_count = models.PositiveIntegerField()
    size = models.BigIntegerField(help_text="Bytes of text, uncompressed")
    artifact = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="attempt_logs")

    class Meta:
        ordering = ["attempt"]
        constraints = [models.UniqueConstraint(fields=["step_run", "attempt"], name="unique_log_per_attempt")]


class Metric(models.Model):
    step_run = models.ForeignKey(StepRun, on_delete=models.CASCADE, related_name="metrics")
    name = models.CharField(max_length=255)
    value = models.FloatField()
    step = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["step_run", "name"])]


class Param(models.Model):
    """A parameter a step logged (`mlflow.log_param`, `stepwise.log_param`): one value per name."""

    step_run = models.ForeignKey(StepRun, on_delete=models.CASCADE, related_name="params")
    name = models.CharField(max_length=255)
    value = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["step_run", "name"], name="unique_param_per_step")]

    def __str__(self) -> str:
        return f"{self.name}={self.value[:40]}"


class TrialState(models.TextChoices):
    # Waiting for a worker to claim it (runs/sweep_trials.py, sweep_trial_claim).
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    EARLY_TERMINATED = "early_terminated", "early terminated"
    # Stopped by its sweep: the sweep's timeout, or the step canceled or superseded.
    CANCELED = "canceled"


# Every legal edge of a trial; a trial is created queued, claimed once, and ends once.
TRIAL_TRANSITIONS: dict[str, frozenset[str]] = {
    # Failed or canceled without running: its sweep could not hand it out, or stopped first.
    TrialState.QUEUED: frozenset({TrialState.RUNNING, TrialState.FAILED, TrialState.CANCELED}),
    TrialState.RUNNING: frozenset(
        {TrialState.COMPLETED, TrialState.FAILED, TrialState.EARLY_TERMINATED, TrialState.CANCELED}
    ),
}


class SweepTrial(models.Model):
    """One trial of a sweep step's attempt: the inputs it was given and what it reported.

    Written through `runs.sweep_trials`: by the sweep driver (runs/sweep_driver.py), which alone
    decides its fate, and by the worker that claimed it when that is not the sweep's own
    (runs/trial_runner.py), which only beats, ships its progress and hands in its result.
    """

    step_run = models.ForeignKey(StepRun, on_delete=models.CASCADE, related_name="trials")
    attempt = models.PositiveIntegerField()
    number = models.PositiveIntegerField()
    params = models.JSONField(default=dict)
    state = models.CharField(max_length=20, choices=TrialState.choices, default=TrialState.QUEUED)
    # The worker that claimed it (runs/worker.py, worker_name), the sweep's own or another.
    worker = models.CharField(max_length=255, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The driver's word to a trial run by another worker, which kills its process when it reads it.
    stop_requested = models.TextField(blank=True)
    # What a trial run by another worker handed in when its process ended (runs/trial_runner.py):
    # exit code, why it stopped, and its outputs, already in the artifact store.
    result = models.JSONField(null=True, blank=True)
    # Those outputs' rows: the sweep adopts the best trial's when it ends, and until then garbage
    # collection (runs/gc.py) leaves every one of its running sweep's alone.
    artifacts = models.ManyToManyField(Artifact, blank=True, related_name="sweep_trials")
    # {metric name: [values in the order logged]}
    metrics = models.JSONField(default=dict, blank=True)
    # The primary metric's last value: what the sweep ranks trials by.
    objective = models.FloatField(null=True, blank=True)
    is_best = models.BooleanField(default=False)
    exit_code = models.IntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    # When it was claimed; None while queued.
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["step_run", "attempt", "number"]
        constraints = [
            models.UniqueConstraint(fields=["step_run", "attempt", "number"], name="unique_trial_per_attempt")
        ]

    def __str__(self) -> str:
        return f"trial {self.number} of {self.step_run}"

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None or self.started_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class SweepTrialReport(models.Model):
    """What a trial run by another worker printed and logged since its last report; the driver
    takes (and deletes) these in order, as it takes a local trial's from memory."""

    trial = models.ForeignKey(SweepTrial, on_delete=models.CASCADE, related_name="reports")
    lines = models.JSONField(default=list)
    # [[name, value, step], ...]
    metrics = models.JSONField(default=list)

    class Meta:
        ordering = ["pk"]


class WorkerState(models.TextChoices):
    IDLE = "idle"
    BUSY = "busy"
    STOPPED = "stopped"


class Worker(models.Model):
    """A step worker process (`manage.py stepwise_worker`) as it last reported itself.

    Kept in the database rather than in RQ's worker registry, which a flushed Redis forgets
    and which never says that a worker went away. Every write is in runs/worker_status.py: the
    worker writes its own row; the Workers page only sets `drain`. A worker that never said it
    stopped (SIGKILL, a lost host) is lost once its heartbeat is too old.
    """

    # host:pid, as the StepRun.worker of the steps it runs.
    name = models.CharField(max_length=255, unique=True)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    rq_name = models.CharField(max_length=255, blank=True, help_text="Its name in RQ's dashboard")
    targets = models.JSONField(default=list, help_text="Names of the compute targets whose steps it takes")
    state = models.CharField(max_length=10, choices=WorkerState.choices, default=WorkerState.IDLE)
    drain = models.BooleanField(default=False, help_text="Finish the current step, then take no more")
    drain_requested_at = models.DateTimeField(null=True, blank=True)
    drain_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    steps_done = models.PositiveIntegerField(default=0, help_text="Step attempts it ran, whatever their outcome")
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField(db_index=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["host", "name"]

    def __str__(self) -> str:
        return self.name


# -- Data: datastores, data assets and their versions --------------------------------------


class DataType(models.TextChoices):
    URI_FILE = "uri_file"
    URI_FOLDER = "uri_folder"


class Datastore(models.Model):
    """A named place a team's data lives: a local folder, or an S3-compatible bucket (fsspec)."""

    class Kind(models.TextChoices):
        LOCAL = "local"
        S3 = "s3"

    team = models.ForeignKey("pipelines_ui.Team", on_delete=models.CASCADE, related_name="datastores")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.LOCAL)
    # A local folder's path, or `s3://bucket/prefix`.
    root = models.CharField(max_length=1000)
    # S3 endpoint and options other than keys (plain JSON); keys live in `credentials`.
    options = models.JSONField(default=dict, blank=True)
    # Fernet-encrypted {name: value} (runs.secrets); never rendered, never passed to a step.
    credentials = models.JSONField(default=dict, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="unique_datastore_per_team")]

    def __str__(self) -> str:
        return f"{self.team}/{self.name}"


class DataAsset(models.Model):
    """A team's named data; its content lives in immutable DataVersions."""

    team = models.ForeignKey("pipelines_ui.Team", on_delete=models.CASCADE, related_name="data_assets")
    name = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="unique_data_asset_per_team")]

    def __str__(self) -> str:
        return f"{self.team}/{self.name}"

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("data_detail", args=[self.pk])


class DataVersion(models.Model):
    """One immutable version of a data asset: its files are an Artifact (content-hashed manifest)."""

    class Source(models.TextChoices):
        UPLOAD = "upload"
        PATH = "path"
        DATASTORE = "datastore"
        STEP_OUTPUT = "step_output"

    asset = models.ForeignKey(DataAsset, on_delete=models.CASCADE, related_name="versions")
    version = models.CharField(max_length=64)
    # Ordering among versions: `@latest` is the newest non-archived one by this number.
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=10, choices=DataType.choices, default=DataType.URI_FOLDER)
    artifact = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="data_versions")
    size = models.BigIntegerField(default=0)
    file_count = models.PositiveIntegerField(default=0)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=dict, blank=True)
    archived = models.BooleanField(default=False)
    source = models.CharField(max_length=12, choices=Source.choices)
    # Where it came from: a datastore path, or the step output that made it (lineage).
    datastore = models.ForeignKey(Datastore, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    source_path = models.CharField(max_length=1000, blank=True)
    step_output = models.ForeignKey(
        StepOutput, on_delete=models.SET_NULL, null=True, blank=True, related_name="data_versions"
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["asset", "-seq"]
        constraints = [
            models.UniqueConstraint(fields=["asset", "version"], name="unique_data_version"),
            models.UniqueConstraint(fields=["asset", "seq"], name="unique_data_version_seq"),
        ]

    def __str__(self) -> str:
        return f"{self.asset.name}:{self.version}"

    def save(self, *args, **kwargs) -> None:
        # A version is immutable: runs recorded it by content; only its labels change.
        fields = kwargs.get("update_fields")
        if self.pk is not None and (fields is None or not set(fields) <= {"archived", "description", "tags"}):
            raise ValueError(f"data version {self} is immutable: only archived, description and tags change")
        super().save(*args, **kwargs)


class RunDataInput(models.Model):
    """The exact data version a run's input resolved to when the run was created."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="data_inputs")
    name = models.CharField(max_length=255)
    reference = models.CharField(max_length=400, help_text="As written, e.g. azureml:digits@latest")
    data_version = models.ForeignKey(DataVersion, on_delete=models.PROTECT, related_name="run_inputs")

    class Meta:
        ordering = ["run", "name"]
        constraints = [models.UniqueConstraint(fields=["run", "name"], name="unique_data_input_per_run")]


class RunRemoteInput(models.Model):
    """What a run's `azureml://datastores/...` or `https://...` input held when the run was created:
    the stored copy (so reruns read the same bytes), its sha256 and the server's validators."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="remote_inputs")
    name = models.CharField(max_length=255)
    reference = models.CharField(max_length=2000)
    artifact = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="remote_inputs")
    # For a file, the sha256 of its bytes; for a datastore folder, the artifact's manifest hash.
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField(default=0)
    etag = models.CharField(max_length=200, blank=True)
    last_modified = models.CharField(max_length=100, blank=True)
    datastore = models.ForeignKey(Datastore, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    fetched_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "name"]
        constraints = [models.UniqueConstraint(fields=["run", "name"], name="unique_remote_input_per_run")]

    def __str__(self) -> str:
        return f"{self.name}: {self.reference}"
