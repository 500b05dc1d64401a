"""Schedules: runs of a pipeline (its latest version) or an endpoint (its default version) on a
cron expression in a time zone, or every `interval_seconds`.

Fire times are instants (UTC in the database). A cron expression is evaluated in the schedule's
time zone with aware datetimes, so "0 9 * * *" in America/New_York is 14:00 UTC in winter and
13:00 UTC in summer; a wall time that a spring-forward skips fires at the first minute after the
gap (croniter's behaviour, as classic cron does), and one that a fall-back repeats fires once
unless the hour field is a wildcard. An interval schedule fires at `created_at` (whole seconds)
plus multiples of the interval.

`tick(now)` starts the runs that are due. Any number of schedulers may tick at once: a fire time
is claimed by inserting its ScheduleFire row in the transaction that starts its run, and the
unique (schedule, fire_time) key makes every other claimant's insert fail (on PostgreSQL it waits
for the first transaction, then fails), so each fire time starts at most one run.
"""

from __future__ import annotations

import logging
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import islice

from croniter import CroniterBadDateError, croniter
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from pipelines_ui import team_secrets
from pipelines_ui.api.endpoints import EndpointError, endpoint_call
from pipelines_ui.api.models import Catchup, Endpoint, Schedule, ScheduleFire
from pipelines_ui.models import Membership, Pipeline, PipelineVersion, Team
from pipelines_ui.selectors import EDIT_ROLES
from runs.models import Run
from runs.services import PipelineDeleted, RunInputError, run_create, run_inputs_clean
from runs.specs import version_spec
from stepwise.spec.model import SECRET_TYPE

log = logging.getLogger(__name__)

# The scheduler wakes at least once a second, so a shorter interval could not be kept anyway.
MIN_INTERVAL_S = 1
MAX_INTERVAL_S = 366 * 24 * 3600
# `none`: a fire time at most this old when a scheduler sees it is on time, not missed (a tick
# that ran late, a scheduler restarted by `serve`); older ones are skipped.
NONE_GRACE = timedelta(seconds=30)
# `all` after a long stop: at most this many runs per schedule and tick (the rest next tick).
MAX_FIRES_PER_TICK = 100
# `latest`/`none`: the newest skipped fire times get a row each, up to this many.
MAX_SKIPS_RECORDED = 100
NEXT_COUNT = 5
NAME_MAX = 100
# A generated name lost to a concurrent create: pick again this many times before giving up.
NAME_TRIES = 5
CRON_EXAMPLES = (
    ("*/15 * * * *", "every 15 minutes"),
    ("0 * * * *", "every hour, on the hour"),
    ("30 6 * * *", "every day at 06:30"),
    ("0 9 * * 1-5", "weekdays at 09:00"),
    ("0 0 1 * *", "the first of every month at midnight"),
    ("@daily", "every day at midnight"),
)
MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


class ScheduleError(ValueError):
    """Bad schedule settings; `errors` maps the field (`inputs.X` for an input) to what is wrong."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


@lru_cache(maxsize=1)
def timezone_names() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


# ---- validation ---------------------------------------------------------------------------


def cron_problem(expr: str) -> str | None:
    """Why `expr` is not a cron expression we run, or None."""
    text = " ".join(expr.split())
    if not text:
        return "a cron expression is required"
    if text.startswith("@"):
        return None if text in MACROS else f"unknown macro {text!r}: one of {', '.join(sorted(MACROS))}"
    if len(text.split()) != 5:
        return "five fields: minute hour day-of-month month day-of-week (e.g. '*/15 * * * *')"
    if not croniter.is_valid(text):
        return f"{text!r} is not a valid cron expression (e.g. '30 6 * * *' is every day at 06:30)"
    try:
        croniter(text, timezone.now()).get_next(datetime)
    except CroniterBadDateError:
        return f"{text!r} never fires: no date matches it (e.g. 31 February)"
    return None


def target_version(*, pipeline: Pipeline | None, endpoint: Endpoint | None) -> PipelineVersion | None:
    if endpoint is not None:
        return endpoint.default_version
    return pipeline.latest_version if pipeline is not None else None


def inputs_clean(version: PipelineVersion | None, raw: object) -> dict[str, object]:
    """The inputs type-checked against the version's (errors keyed `inputs.NAME`)."""
    if not isinstance(raw, dict):
        raise ScheduleError({"inputs": "an object of input names to values"})
    if version is None:
        if raw:
            raise ScheduleError({"inputs": "the pipeline has no version yet, so no inputs"})
        return {}
    spec = version_spec(version)
    secret = [n for n in raw if n in spec.inputs and spec.inputs[n].type == SECRET_TYPE]
    if secret:
        message = (
            "secret inputs are not stored in schedules: a team admin adds a team secret of this name, "
            "which each run takes"
        )
        raise ScheduleError({f"inputs.{n}": message for n in secret})
    try:
        return run_inputs_clean(spec, raw, team_secret_names=team_secrets.secret_names(version.pipeline.team_id))
    except RunInputError as exc:
        raise ScheduleError({f"inputs.{k}": v for k, v in exc.errors.items()}) from None


@dataclass
class Settings:
    """A schedule's settings as given (API body or form), checked together by `settings_clean`.

    `name` None: `schedule_create` makes one up (the API's body may leave it out)."""

    name: str | None = ""
    cron: str = ""
    timezone: str = "UTC"
    interval_seconds: int | None = None
    inputs: dict = field(default_factory=dict)
    enabled: bool = True
    catchup: str = Catchup.LATEST


def settings_clean(s: Settings, *, version: PipelineVersion | None) -> Settings:
    errors: dict[str, str] = {}
    name = None if s.name is None else s.name.strip()
    if name == "":
        errors["name"] = "a name is required"
    elif name is not None and len(name) > NAME_MAX:
        errors["name"] = f"at most {NAME_MAX} characters"
    cron = " ".join((s.cron or "").split())
    if cron and s.interval_seconds is not None:
        errors["cron"] = "give a cron expression or interval_seconds, not both"
    elif not cron and s.interval_seconds is None:
        errors["cron"] = "give a cron expression (with a timezone) or interval_seconds"
    elif cron:
        if problem := cron_problem(cron):
            errors["cron"] = problem
    elif isinstance(s.interval_seconds, bool) or not isinstance(s.interval_seconds, int):
        errors["interval_seconds"] = "a whole number of seconds"
    elif not MIN_INTERVAL_S <= s.interval_seconds <= MAX_INTERVAL_S:
        errors["interval_seconds"] = f"between {MIN_INTERVAL_S} and {MAX_INTERVAL_S} seconds (366 days)"
    tz = s.timezone or "UTC"
    if tz not in timezone_names():
        errors["timezone"] = f"unknown time zone {tz!r}: an IANA name such as 'Europe/Berlin' or 'UTC'"
    if s.catchup not in Catchup.values:
        errors["catchup"] = f"one of {', '.join(Catchup.values)}"
    inputs: dict = {}
    try:
        inputs = inputs_clean(version, s.inputs)
    except ScheduleError as exc:
        errors.update(exc.errors)
    if errors:
        raise ScheduleError(errors)
    return Settings(
        name=name,
        cron=cron,
        timezone=tz,
        interval_seconds=None if cron else s.interval_seconds,
        inputs=inputs,
        enabled=bool(s.enabled),
        catchup=s.catchup,
    )


# ---- create, change, delete -----------------------------------------------------------------


def schedule_create(
    *, team: Team, settings: Settings, user, pipeline: Pipeline | None = None, endpoint: Endpoint | None = None
) -> Schedule:
    """A new schedule; `settings.name` None: a free name made from the target's name and the timing."""
    if (pipeline is None) == (endpoint is None):
        raise ScheduleError({"pipeline": "a schedule runs a pipeline or an endpoint: give exactly one"})
    target = pipeline or endpoint
    if target.team_id != team.pk:
        raise ScheduleError({"pipeline" if pipeline else "endpoint": f"not in team {team.name}"})
    clean = settings_clean(settings, version=target_version(pipeline=pipeline, endpoint=endpoint))
    fields = {"team": team, "pipeline": pipeline, "endpoint": endpoint, "created_by": user}
    if clean.name is not None:
        taken = ScheduleError({"name": f"team {team.name} already has a schedule named {clean.name!r}"})
        if Schedule.objects.filter(team=team, name=clean.name).exists():
            raise taken
        try:
            return _schedule_insert(clean, **fields)
        except IntegrityError:  # the same name, created meanwhile
            raise taken from None
    base = f"{target.name}: {timing_text(cron=clean.cron, tz=clean.timezone, interval_seconds=clean.interval_seconds)}"
    # Another create may take the free name first: the next try reads the names again.
    for _ in range(NAME_TRIES):
        try:
            return _schedule_insert(replace(clean, name=schedule_name_free(team=team, base=base)), **fields)
        except IntegrityError:
            continue
    raise ScheduleError({"name": f"no free name like {base!r} in team {team.name}: give a name"})


def _schedule_insert(clean: Settings, **fields) -> Schedule:
    with transaction.atomic():
        return Schedule.objects.create(
            **fields,
            # Fire times from now on: a new schedule has nothing to catch up.
            handled_until=timezone.now(),
            **clean.__dict__,
        )


def schedule_name_free(*, team: Team, base: str) -> str:
    """`base`, or `base #2`, `#3`, ...: the first that no schedule of the team has (cut to fit)."""
    # Every candidate starts with these characters, however long its suffix (up to #9999999).
    stem = base[: NAME_MAX - 9]
    taken = set(Schedule.objects.filter(team=team, name__startswith=stem).values_list("name", flat=True))
    name = base[:NAME_MAX]
    number = 1
    while name in taken:
        number += 1
        suffix = f" #{number}"
        name = base[: NAME_MAX - len(suffix)] + suffix
    return name


TIMING = ("cron", "timezone", "interval_seconds")


def schedule_update(*, schedule: Schedule, changes: dict) -> Schedule:
    """Change some settings (PATCH). Resuming, or a new cron, time zone or interval, starts from
    now: fire times while paused, or of the old timing, are not caught up."""
    if changes == {"enabled": False}:
        return schedule_set_enabled(schedule=schedule, enabled=False)
    unknown = set(changes) - set(Settings.__dataclass_fields__)
    if unknown:
        raise ScheduleError({k: "cannot be changed" for k in sorted(unknown)})
    current = Settings(
        name=schedule.name,
        cron=schedule.cron,
        timezone=schedule.timezone,
        interval_seconds=schedule.interval_seconds,
        inputs=schedule.inputs,
        enabled=schedule.enabled,
        catchup=schedule.catchup,
    )
    merged = {**current.__dict__, **changes}
    # Switching between cron and interval: the one given replaces the other.
    if changes.get("cron") and "interval_seconds" not in changes:
        merged["interval_seconds"] = None
    if changes.get("interval_seconds") is not None and "cron" not in changes:
        merged["cron"] = ""
    version = target_version(pipeline=schedule.pipeline, endpoint=schedule.endpoint)
    clean = settings_clean(Settings(**merged), version=version)
    restart = (clean.enabled and not schedule.enabled) or any(getattr(clean, k) != getattr(schedule, k) for k in TIMING)
    if clean.name != schedule.name and Schedule.objects.filter(team=schedule.team_id, name=clean.name).exists():
        raise ScheduleError({"name": f"this team already has a schedule named {clean.name!r}"})
    with transaction.atomic():
        fields = dict(clean.__dict__)
        if restart:
            now = timezone.now()
            if schedule.handled_until is None or schedule.handled_until < now:
                fields["handled_until"] = now
        try:
            with transaction.atomic():
                Schedule.objects.filter(pk=schedule.pk).update(**fields)
        except IntegrityError:
            raise ScheduleError({"name": f"this team already has a schedule named {clean.name!r}"}) from None
    schedule.refresh_from_db()
    return schedule


def schedule_set_enabled(*, schedule: Schedule, enabled: bool) -> Schedule:
    """Pause (always possible) or resume (its settings checked again: the pipeline may have changed)."""
    if not enabled:
        Schedule.objects.filter(pk=schedule.pk).update(enabled=False)
        schedule.enabled = False
        return schedule
    return schedule_update(schedule=schedule, changes={"enabled": True})


# ---- fire times -------------------------------------------------------------------------------


def _aware(moment: datetime) -> datetime:
    if timezone.is_naive(moment):
        raise ValueError("fire times are computed from aware datetimes")
    return moment


def _interval_anchor(schedule: Schedule) -> int:
    return int(schedule.created_at.timestamp())


def _repeated_wall_time(moment: datetime, cron: str) -> bool:
    """The second occurrence of a wall time a fall-back repeats, for a cron with a fixed hour."""
    if moment.fold != 1 or moment.replace(fold=0).utcoffset() == moment.utcoffset():
        return False
    hour = "*" if cron == "@hourly" else ("0" if cron.startswith("@") else cron.split()[1])
    return "*" not in hour


def _cron_times(schedule: Schedule, start: datetime, *, backwards: bool) -> Iterator[datetime]:
    tz = zoneinfo.ZoneInfo(schedule.timezone)
    # get_next is strictly after its start; get_prev strictly before, hence the microsecond.
    origin = (start + timedelta(microseconds=1) if backwards else start).astimezone(tz)
    it = croniter(schedule.cron, origin)
    step = it.get_prev if backwards else it.get_next
    while True:
        try:
            local = step(datetime).astimezone(tz)
        except CroniterBadDateError:
            return  # a cron no date matches (saved before the check refused it): no fire times

        if _repeated_wall_time(local, schedule.cron):
            continue
        yield local.astimezone(UTC)


def _interval_times(schedule: Schedule, start: datetime, *, backwards: bool) -> Iterator[datetime]:
    anchor = _interval_anchor(schedule)
    every = schedule.interval_seconds
    # Integer seconds: no float drift over many intervals.
    offset = start.timestamp() - anchor
    if backwards:
        k = int(offset // every)
        while k >= 1:
            yield datetime.fromtimestamp(anchor + k * every, UTC)
            k -= 1
    else:
        k = max(int(offset // every) + 1, 1)
        while True:
            yield datetime.fromtimestamp(anchor + k * every, UTC)
            k += 1


def fire_times_after(schedule: Schedule, after: datetime) -> Iterator[datetime]:
    """Fire times strictly after `after`, oldest first (endless)."""
    after = _aware(after)
    if schedule.cron:
        return _cron_times(schedule, after, backwards=False)
    return _interval_times(schedule, after, backwards=False)


def fire_times_until(schedule: Schedule, until: datetime) -> Iterator[datetime]:
    """Fire times at or before `until`, newest first."""
    until = _aware(until)
    if schedule.cron:
        return _cron_times(schedule, until, backwards=True)
    return _interval_times(schedule, until, backwards=True)


def next_fire_times(schedule: Schedule, n: int = NEXT_COUNT, after: datetime | None = None) -> list[datetime]:
    return list(islice(fire_times_after(schedule, after or timezone.now()), n))


def handled_since(schedule: Schedule) -> datetime:
    return schedule.handled_until or schedule.created_at


def due_fire_times(schedule: Schedule, now: datetime, limit: int = MAX_FIRES_PER_TICK) -> list[datetime]:
    """Fire times after `handled_until` (or creation) and at or before `now`, oldest first, at most `limit`."""
    out: list[datetime] = []
    for moment in fire_times_after(schedule, handled_since(schedule)):
        if moment > now or len(out) >= limit:
            break
        out.append(moment)
    return out


def latest_due(schedule: Schedule, now: datetime, limit: int) -> list[datetime]:
    """Up to `limit` due fire times, newest first."""
    since = handled_since(schedule)
    out: list[datetime] = []
    for moment in fire_times_until(schedule, now):
        if moment <= since or len(out) >= limit:
            break
        out.append(moment)
    return out


def next_due(now: datetime) -> datetime | None:
    """The earliest fire time, across enabled schedules, that is not handled yet."""
    soonest = None
    for schedule in Schedule.objects.filter(enabled=True):
        try:
            moment = next(fire_times_after(schedule, handled_since(schedule)))
        except (ValueError, KeyError, zoneinfo.ZoneInfoNotFoundError):
            continue
        if soonest is None or moment < soonest:
            soonest = moment
    return soonest


# ---- firing -------------------------------------------------------------------------------------


@dataclass
class TickResult:
    fired: list[ScheduleFire] = field(default_factory=list)
    failed: list[ScheduleFire] = field(default_factory=list)
    skipped: int = 0
    lost: int = 0  # fire times another scheduler claimed first

    def __str__(self) -> str:
        return (
            f"fired {len(self.fired)}, failed {len(self.failed)}, skipped {self.skipped}, taken by another {self.lost}"
        )


def _start_run(schedule: Schedule) -> Run:
    """Start the schedule's run as its creator; raises ScheduleError or RunInputError."""
    owner = schedule.created_by
    if owner is None or not owner.is_active:
        raise ScheduleError({"created_by": "the schedule's creator no longer has an account"})
    role = Membership.objects.filter(team_id=schedule.team_id, user=owner).values_list("role", flat=True).first()
    if role not in EDIT_ROLES:
        raise ScheduleError(
            {"created_by": f"{owner.get_username()} may no longer run this team's pipelines (role: {role or 'none'})"}
        )
    if schedule.endpoint_id is not None:
        return endpoint_call(endpoint=schedule.endpoint, user=owner, inputs=schedule.inputs, schedule=schedule).run
    version = schedule.pipeline.latest_version
    if version is None:
        raise ScheduleError({"pipeline": f"pipeline {schedule.pipeline.name!r} has no version yet"})
    return run_create(version=version, user=owner, inputs=schedule.inputs)


def _move_handled_until(schedule: Schedule, moment: datetime) -> None:
    Schedule.objects.filter(Q(handled_until__isnull=True) | Q(handled_until__lt=moment), pk=schedule.pk).update(
        handled_until=moment
    )


def fire(schedule: Schedule, fire_time: datetime) -> ScheduleFire | None:
    """Claim `fire_time` and start its run in one transaction; None when another scheduler has it.

    A run that cannot start is recorded with its error and not retried."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                row = ScheduleFire.objects.create(schedule=schedule, fire_time=fire_time)
        except IntegrityError:
            _move_handled_until(schedule, fire_time)
            return None
        try:
            with transaction.atomic():
                run = _start_run(schedule)
        except (ScheduleError, RunInputError, EndpointError, PipelineDeleted) as exc:
            row.error = str(exc)
            ScheduleFire.objects.filter(pk=row.pk).update(error=row.error)
        else:
            row.run = run
            ScheduleFire.objects.filter(pk=row.pk).update(run=run)
        _move_handled_until(schedule, fire_time)
    return row


def _record_skipped(schedule: Schedule, times: list[datetime]) -> int:
    if not times:
        return 0
    # One order for every scheduler: two inserting the same rows wait for each other, never deadlock.
    rows = [ScheduleFire(schedule=schedule, fire_time=t, skipped=True) for t in sorted(times)]
    with transaction.atomic():
        ScheduleFire.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def schedule_tick(schedule: Schedule, now: datetime, result: TickResult) -> None:
    if schedule.catchup == Catchup.ALL:
        to_fire = due_fire_times(schedule, now)
        to_skip: list[datetime] = []
    else:
        newest = latest_due(schedule, now, MAX_SKIPS_RECORDED + 1)
        if not newest:
            return
        latest, to_skip = newest[0], newest[1:]
        if schedule.catchup == Catchup.NONE and now - latest > NONE_GRACE:
            to_fire, to_skip = [], newest
        else:
            to_fire = [latest]
        result.skipped += _record_skipped(schedule, to_skip)
        if to_skip:
            log.info(
                "schedule %s (#%s): %d missed fire time(s) skipped (%s)",
                schedule,
                schedule.pk,
                len(to_skip),
                schedule.catchup,
            )
        if not to_fire:
            _move_handled_until(schedule, newest[0])
    for fire_time in to_fire:
        row = fire(schedule, fire_time)
        if row is None:
            result.lost += 1
        elif row.run_id is None:
            result.failed.append(row)
            log.warning(
                "schedule %s (#%s): fire time %s: no run: %s", schedule, schedule.pk, fire_time.isoformat(), row.error
            )
        else:
            result.fired.append(row)
            log.info(
                "schedule %s (#%s): fire time %s started run #%s",
                schedule,
                schedule.pk,
                fire_time.isoformat(),
                row.run_id,
            )


def tick(now: datetime | None = None) -> TickResult:
    """Start the runs due at `now` for every enabled schedule, per its catch-up policy."""
    now = _aware(now or timezone.now())
    result = TickResult()
    schedules = Schedule.objects.filter(enabled=True).select_related(
        "team", "pipeline__latest_version", "endpoint__default_version", "created_by"
    )
    for schedule in schedules.order_by("pk"):
        try:
            schedule_tick(schedule, now, result)
        except Exception:
            # One broken schedule must not stop the others; its fire time is retried next tick.
            log.exception("schedule %s (#%s): tick failed", schedule, schedule.pk)
    return result


# ---- reading -------------------------------------------------------------------------------------


def schedules_visible(team_ids: list[int]):
    return Schedule.objects.filter(team_id__in=team_ids).select_related(
        "team", "pipeline", "endpoint", "endpoint__default_version", "created_by"
    )


def recent_fires(schedule: Schedule, n: int = 10):
    return schedule.fires.select_related("run").order_by("-fire_time")[:n]


def describe_timing(schedule: Schedule) -> str:
    return timing_text(cron=schedule.cron, tz=schedule.timezone, interval_seconds=schedule.interval_seconds)


def timing_text(*, cron: str, tz: str, interval_seconds: int | None) -> str:
    if cron:
        return f"cron {cron} ({tz})"
    every = interval_seconds or 0
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if every % size == 0 and every >= size:
            count = every // size
            return f"every {count} {unit}{'s' if count != 1 else ''}"
    return f"every {every} second{'s' if every != 1 else ''}"
