"""Data triggers: a pipeline started with one data input bound to new data.

An asset trigger fires when a version of its data asset is added: runs.data_assets sends
`data_version_created` after the version's transaction commits, and `version_added` starts one run
per enabled trigger with the input bound to `azureml:NAME:VERSION`. Nothing is polled. Exactly
one run per version and trigger: the DataTriggerFire row is inserted in the transaction that
starts the run, and its unique (trigger, data_version) key makes a second claimant's insert fail
(a signal delivered twice, a sweep racing the signal). The scheduler's tick also sweeps versions
that a dead process never fired (`sweep_versions`).

A datastore path trigger is polled by the scheduler loop every `interval_seconds`: a hash of the
path's listing is compared with the one seen before, and the poll that moves `seen` by
compare-and-set starts the run, with the input bound to `azureml://datastores/STORE/paths/PATH`
(read and hashed by the run itself, runs/remote_inputs.py). The first look only takes the
baseline, as a new asset trigger ignores the versions before it. The compare-and-set and a
pending DataTriggerFire are one transaction, the run another (the run's copy of the path must
not hold the write lock): a poller that dies between the two leaves the fire pending, and the
scheduler's tick starts it after PENDING_GRACE (`sweep_pending`). A fire is settled (its run or
its error) by compare-and-set in the transaction that starts the run, so that a late poller and
the sweep never both start one.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from pipelines_ui.api.models import DataTrigger, DataTriggerFire
from pipelines_ui.models import Membership, Pipeline, Team
from pipelines_ui.selectors import EDIT_ROLES
from runs.data_assets import DataError, datastore_path_check, datastore_path_state
from runs.models import DataAsset, Datastore, DataVersion, Run
from runs.services import PipelineDeleted, RunInputError, run_create
from runs.specs import version_spec
from stepwise.spec.bindings import is_run_resolved
from stepwise.spec.model import DATA_TYPES

log = logging.getLogger(__name__)

MIN_POLL_S = 10
# How long a claimed path change waits for its poller before the sweep starts its run: longer
# than a start takes (the run copies the path), or the sweep's start only loses to the poller's.
PENDING_GRACE = timedelta(minutes=10)
MAX_POLL_S = 366 * 24 * 3600
# Versions older than this are not swept: a trigger fires for new data, not for a backlog.
SWEEP_WINDOW = timedelta(hours=1)


class TriggerError(ValueError):
    """Bad trigger settings; `errors` maps the field to what is wrong."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


@dataclass
class TriggerSettings:
    name: str = ""
    pipeline: Pipeline | None = None
    input_name: str = ""
    asset: DataAsset | None = None
    datastore: Datastore | None = None
    path: str = ""
    interval_seconds: int | None = None
    enabled: bool = True


def _check_input(pipeline: Pipeline, input_name: str, errors: dict[str, str], data_type: str | None) -> None:
    version = pipeline.latest_version
    if version is None:
        errors["pipeline"] = f"pipeline {pipeline.name!r} has no version yet"
        return
    decl = version_spec(version).inputs.get(input_name)
    if decl is None:
        errors["input_name"] = f"pipeline {pipeline.name!r} has no input named {input_name[:100]!r}"
    elif decl.type not in DATA_TYPES or decl.asset is None or not is_run_resolved(decl.asset):
        errors["input_name"] = (
            f"input {input_name!r} is not a data input read by reference: declare it with "
            "path: azureml:NAME@latest (or a datastore path) so that a trigger can bind new data to it"
        )
    elif data_type is not None and decl.type != data_type:
        errors["input_name"] = f"input {input_name!r} is {decl.type} but the data is {data_type}"


def settings_clean(s: TriggerSettings, *, team: Team) -> TriggerSettings:
    errors: dict[str, str] = {}
    name = (s.name or "").strip()
    if not name:
        errors["name"] = "a name is required"
    elif len(name) > 100:
        errors["name"] = "at most 100 characters"
    if s.pipeline is None or s.pipeline.team_id != team.pk:
        errors["pipeline"] = f"choose a pipeline of team {team.name}"
    if (s.asset is None) == (s.datastore is None):
        errors["asset"] = "choose a data asset, or a datastore and a path"
    path, interval = "", None
    data_type = None
    if s.asset is not None:
        if s.asset.team_id != team.pk:
            errors["asset"] = f"choose a data asset of team {team.name}"
        latest = s.asset.versions.order_by("-seq").first()
        data_type = latest.type if latest is not None else None
    elif s.datastore is not None:
        if s.datastore.team_id != team.pk:
            errors["datastore"] = f"choose a datastore of team {team.name}"
        try:
            path = datastore_path_check(s.datastore, s.path or "")
        except DataError as exc:
            errors["path"] = str(exc)
        interval = s.interval_seconds
        if isinstance(interval, bool) or not isinstance(interval, int):
            errors["interval_seconds"] = "a whole number of seconds"
        elif not MIN_POLL_S <= interval <= MAX_POLL_S:
            errors["interval_seconds"] = f"between {MIN_POLL_S} and {MAX_POLL_S} seconds (366 days)"
    if s.pipeline is not None and "pipeline" not in errors:
        _check_input(s.pipeline, (s.input_name or "").strip(), errors, data_type)
    if errors:
        raise TriggerError(errors)
    return TriggerSettings(
        name=name,
        pipeline=s.pipeline,
        input_name=s.input_name.strip(),
        asset=s.asset,
        datastore=s.datastore,
        path=path,
        interval_seconds=interval,
        enabled=bool(s.enabled),
    )


# ---- create, pause, delete ------------------------------------------------------------------------


def data_trigger_create(*, team: Team, settings: TriggerSettings, user) -> DataTrigger:
    clean = settings_clean(settings, team=team)
    taken = TriggerError({"name": f"team {team.name} already has a data trigger named {clean.name!r}"})
    if DataTrigger.objects.filter(team=team, name=clean.name).exists():
        raise taken
    try:
        with transaction.atomic():
            return DataTrigger.objects.create(
                team=team,
                name=clean.name,
                pipeline=clean.pipeline,
                input_name=clean.input_name,
                kind=DataTrigger.Kind.ASSET if clean.asset is not None else DataTrigger.Kind.DATASTORE_PATH,
                asset=clean.asset,
                datastore=clean.datastore,
                path=clean.path,
                interval_seconds=clean.interval_seconds,
                enabled=clean.enabled,
                created_by=user,
                armed_at=timezone.now(),
            )
    except IntegrityError:  # the same name, created meanwhile
        raise taken from None


def data_trigger_set_enabled(*, trigger: DataTrigger, enabled: bool) -> DataTrigger:
    """Pause, or resume from now: versions added and changes made while paused start nothing."""
    fields: dict[str, object] = {"enabled": enabled}
    if enabled and not trigger.enabled:
        fields.update(armed_at=timezone.now(), checked_at=None, seen="")
    DataTrigger.objects.filter(pk=trigger.pk).update(**fields)
    trigger.refresh_from_db()
    return trigger


def data_trigger_delete(*, trigger: DataTrigger) -> None:
    trigger.delete()


# ---- firing -----------------------------------------------------------------------------------------


def _start_run(trigger: DataTrigger, reference: str) -> Run:
    """The trigger's run as its creator, with its input bound to `reference`."""
    owner = trigger.created_by
    if owner is None or not owner.is_active:
        raise TriggerError({"created_by": "the trigger's creator no longer has an account"})
    role = Membership.objects.filter(team_id=trigger.team_id, user=owner).values_list("role", flat=True).first()
    if role not in EDIT_ROLES:
        raise TriggerError(
            {"created_by": f"{owner.get_username()} may no longer run this team's pipelines (role: {role or 'none'})"}
        )
    version = trigger.pipeline.latest_version
    if version is None:
        raise TriggerError({"pipeline": f"pipeline {trigger.pipeline.name!r} has no version yet"})
    return run_create(version=version, user=owner, data_refs={trigger.input_name: reference})


class _SettledMeanwhile(Exception):
    """Another process started (or failed) this fire's run first: this start is rolled back."""


def _settle(row: DataTriggerFire, **fields) -> bool:
    """Compare-and-set a pending fire to its outcome; False when another process settled it."""
    return bool(DataTriggerFire.objects.filter(pk=row.pk, pending=True).update(pending=False, **fields))


def _record(row: DataTriggerFire, start) -> DataTriggerFire | None:
    """Start the pending fire's run and settle the fire with it in one transaction; None when
    another process settled it first (this run is then rolled back)."""
    try:
        with transaction.atomic():
            run = start()
            if not _settle(row, run=run):
                raise _SettledMeanwhile
    except _SettledMeanwhile:
        return None
    except (TriggerError, RunInputError, PipelineDeleted) as exc:
        if not _settle(row, error=str(exc)):
            return None
        row.error, row.pending = str(exc), False
        log.warning("data trigger %s (#%s): no run: %s", row.trigger, row.trigger_id, row.error)
        return row
    row.run, row.pending = run, False
    log.info("data trigger %s (#%s) started run #%s (%s)", row.trigger, row.trigger_id, run.pk, row.reference)
    return row


def fire_for_version(trigger: DataTrigger, version: DataVersion) -> DataTriggerFire | None:
    """Claim `version` for `trigger` and start its run in one transaction; None when it was claimed before."""
    reference = f"azureml:{version.asset.name}:{version.version}"
    with transaction.atomic():
        try:
            with transaction.atomic():
                row = DataTriggerFire.objects.create(
                    trigger=trigger, data_version=version, reference=reference, pending=True
                )
        except IntegrityError:
            return None
        return _record(row, lambda: _start_run(trigger, reference))


def _asset_triggers(version: DataVersion):
    return DataTrigger.objects.filter(
        kind=DataTrigger.Kind.ASSET, asset_id=version.asset_id, enabled=True, armed_at__lte=version.created_at
    ).select_related("team", "pipeline__latest_version", "created_by")


def _made_by_own_run(trigger: DataTrigger, version: DataVersion) -> bool:
    """A version registered from the output of a run this trigger started: firing again would loop
    (a pipeline that writes the asset it is triggered by) for as long as its output changes."""
    if version.step_output_id is None:
        return False
    run_id = DataVersion.objects.filter(pk=version.pk).values_list("step_output__step_run__run_id", flat=True).first()
    return DataTriggerFire.objects.filter(trigger=trigger, run_id=run_id).exists()


def version_added(*, version_id: int) -> list[DataTriggerFire]:
    """Start the runs of the enabled triggers on the version's asset (armed before it was added)."""
    version = DataVersion.objects.select_related("asset").filter(pk=version_id).first()
    if version is None or version.archived:
        return []
    fired = []
    for trigger in _asset_triggers(version).order_by("pk"):
        if _made_by_own_run(trigger, version):
            log.info("data trigger %s (#%s): %s came from its own run; not started again", trigger, trigger.pk, version)
            continue
        try:
            row = fire_for_version(trigger, version)
        except Exception:
            # One broken trigger must not stop the others; the sweep retries the version.
            log.exception("data trigger %s (#%s): version %s failed", trigger, trigger.pk, version)
            continue
        if row is not None:
            fired.append(row)
    return fired


def on_version_created(sender, *, version_id: int, **kwargs) -> None:
    """The `data_version_created` receiver: never raises into the code that registered the data."""
    try:
        version_added(version_id=version_id)
    except Exception:
        log.exception("data triggers for data version #%s failed; the scheduler's sweep retries", version_id)


def sweep_versions(now: datetime) -> list[DataTriggerFire]:
    """Versions of the last SWEEP_WINDOW that an enabled trigger has not fired for (the process that
    added them died before its on-commit hook ran): fire them now."""
    recent = DataVersion.objects.filter(
        created_at__gte=now - SWEEP_WINDOW,
        archived=False,
        asset__triggers__enabled=True,
        asset__triggers__kind=DataTrigger.Kind.ASSET,
    ).distinct()
    fired = []
    for version in recent.order_by("pk"):
        done = set(DataTriggerFire.objects.filter(data_version=version).values_list("trigger_id", flat=True))
        if any(t.pk not in done for t in _asset_triggers(version)):
            fired += version_added(version_id=version.pk)
    return fired


@dataclass
class PollResult:
    fired: list[DataTriggerFire] = field(default_factory=list)
    checked: int = 0

    def __str__(self) -> str:
        return f"data triggers: {self.checked} path(s) checked, {len(self.fired)} run(s) started"


def _poll_due(now: datetime):
    due = DataTrigger.objects.filter(kind=DataTrigger.Kind.DATASTORE_PATH, enabled=True)
    return [
        t
        for t in due.select_related("team", "datastore", "pipeline__latest_version", "created_by").order_by("pk")
        if t.checked_at is None or t.checked_at + timedelta(seconds=t.interval_seconds or MIN_POLL_S) <= now
    ]


def poll_path(trigger: DataTrigger, now: datetime) -> DataTriggerFire | None:
    """Look at the trigger's path; start a run when it changed since the last look (and this poll won)."""
    try:
        state = datastore_path_state(trigger.datastore, trigger.path)
    except DataError as exc:
        log.warning("data trigger %s (#%s): %s", trigger, trigger.pk, exc)
        DataTrigger.objects.filter(pk=trigger.pk, checked_at=trigger.checked_at).update(checked_at=now)
        return None
    reference = f"azureml://datastores/{trigger.datastore.name}/paths/{trigger.path}"
    with transaction.atomic():
        moved = DataTrigger.objects.filter(pk=trigger.pk, checked_at=trigger.checked_at, seen=trigger.seen).update(
            checked_at=now, seen=state
        )
        first_look = trigger.checked_at is None
        if not moved or first_look or not state or state == trigger.seen:
            return None
        # The change is claimed with its fire, pending until its run starts (or the sweep starts it).
        row = DataTriggerFire.objects.create(trigger=trigger, reference=reference, pending=True)
    # The run in a transaction of its own: its copy of the path may be slow and must not hold the
    # claim's write lock.
    return _record(row, lambda: _start_run(trigger, reference))


def sweep_pending(now: datetime) -> list[DataTriggerFire]:
    """Start the runs of fires still pending after PENDING_GRACE: their poller died (or lost its
    database) between claiming a change and starting its run."""
    fired = []
    stale = DataTriggerFire.objects.filter(pending=True, created_at__lt=now - PENDING_GRACE)
    for row in stale.select_related("trigger__team", "trigger__pipeline__latest_version", "trigger__created_by"):
        trigger = row.trigger
        if not trigger.enabled:
            if _settle(row, error="the trigger was paused before this change's run started"):
                log.warning("data trigger %s (#%s): paused; pending fire #%s dropped", trigger, trigger.pk, row.pk)
            continue
        log.warning("data trigger %s (#%s): fire #%s was never started; starting it", trigger, trigger.pk, row.pk)
        try:
            if (done := _record(row, functools.partial(_start_run, trigger, row.reference))) is not None:
                fired.append(done)
        except Exception as exc:
            # Settled with the error rather than retried at every tick: this was the retry.
            log.exception("data trigger %s (#%s): pending fire #%s failed", trigger, trigger.pk, row.pk)
            _settle(row, error=f"could not start its run: {exc}")
    return fired


def tick(now: datetime | None = None) -> PollResult:
    """One pass of the scheduler loop: poll the due datastore paths, sweep unfired versions and
    path changes whose poller died before starting their run."""
    now = now or timezone.now()
    result = PollResult()
    for trigger in _poll_due(now):
        result.checked += 1
        try:
            if (row := poll_path(trigger, now)) is not None:
                result.fired.append(row)
        except Exception:
            log.exception("data trigger %s (#%s): poll failed", trigger, trigger.pk)
    for sweep in (sweep_versions, sweep_pending):
        try:
            result.fired += sweep(now)
        except Exception:
            log.exception("data trigger sweep %s failed", sweep.__name__)
    return result


# ---- reading ------------------------------------------------------------------------------------------


def triggers_visible(team_ids: list[int]):
    return DataTrigger.objects.filter(team_id__in=team_ids).select_related(
        "team", "pipeline", "asset", "datastore", "created_by"
    )


def describe_source(trigger: DataTrigger) -> str:
    if trigger.kind == DataTrigger.Kind.ASSET:
        return f"each new version of {trigger.asset.name}"
    return f"changes in {trigger.datastore.name}:{trigger.path}, checked every {trigger.interval_seconds} s"
