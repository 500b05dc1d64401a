"""`manage.py stepwise_scheduler` as real processes against the test database: two at once over
an every-2-seconds schedule start exactly one run per fire time, with no gaps; a scheduler that
comes back after a stop follows each schedule's catch-up policy. Runs stay queued (no workers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from pipelines_ui.api import schedules
from pipelines_ui.api.models import Catchup, Schedule, ScheduleFire
from runs.models import Run
from tests.conftest import database_url, make_user
from tests.integration.conftest import ROOT, wait_for
from tests.runs.conftest import make_pipeline

pytestmark = pytest.mark.django_db(transaction=True)

FIRE_TIMES = 15  # 30 s of an every-2-seconds schedule


def scheduler(tmp_path, index: int, *args: str) -> tuple[subprocess.Popen, object]:
    log = open(tmp_path / f"scheduler-{index}.log", "wb")  # noqa: SIM115 - closed after the process ends
    env = {**os.environ, "DATABASE_URL": database_url()}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "stepwise_scheduler", *args],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc, log


@pytest.fixture
def world(team):
    alice = make_user("alice", team, "admin")
    return alice, make_pipeline(team, alice)


def test_two_schedulers_start_one_run_per_fire_time(world, team, tmp_path):
    alice, pipeline = world
    schedule = schedules.schedule_create(
        team=team,
        pipeline=pipeline,
        user=alice,
        settings=schedules.Settings(name="every-2s", interval_seconds=2, catchup=Catchup.ALL, inputs={"epochs": 2}),
    )
    procs = [scheduler(tmp_path, i) for i in range(2)]
    try:
        wait_for(
            lambda: ScheduleFire.objects.filter(schedule=schedule).count() >= FIRE_TIMES,
            timeout=FIRE_TIMES * 2 + 60,
            interval=0.5,
            message=f"{FIRE_TIMES} fire times",
            details=lambda: [p.poll() for p, _ in procs],
        )
        assert [p.poll() for p, _ in procs] == [None, None], "a scheduler died"
    finally:
        for proc, _log in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=30) for proc, _log in procs]
        for _proc, log in procs:
            log.close()
    logs = [(tmp_path / f"scheduler-{i}.log").read_text(errors="replace") for i in range(2)]
    assert codes == [0, 0], logs  # SIGTERM ends them cleanly

    fires = list(ScheduleFire.objects.filter(schedule=schedule).order_by("fire_time"))
    schedule.refresh_from_db()
    anchor = schedule.created_at.replace(microsecond=0)
    expected = [anchor + timedelta(seconds=2 * k) for k in range(1, len(fires) + 1)]
    assert [f.fire_time for f in fires] == expected, "a fire time missing or repeated"
    assert all(f.run_id is not None and not f.skipped and not f.error for f in fires), logs
    runs = list(Run.objects.filter(pipeline=pipeline))
    assert len(runs) == len(fires) == len({f.run_id for f in fires})
    assert {r.pk for r in runs} == {f.run_id for f in fires}
    assert all(r.inputs["epochs"] == 2 for r in runs)
    # Each scheduler's own count of the runs it started adds up to the runs there are.
    started = [
        sum(int(line.split()[1].rstrip(",")) for line in text.splitlines() if line.startswith("fired "))
        for text in logs
    ]
    print("runs started by each scheduler:", started)
    assert sum(started) == len(runs)


def test_a_scheduler_back_after_a_stop_follows_each_catchup_policy(world, team, tmp_path):
    """Stopped for five fire times of an every-minute schedule; the newest of them is 45 s old
    (past the `none` grace) when a scheduler comes back."""
    alice, pipeline = world
    created = timezone.now().replace(microsecond=0) - timedelta(seconds=6 * 60 + 45)
    made = {}
    for policy in Catchup.values:
        s = schedules.schedule_create(
            team=team,
            pipeline=pipeline,
            user=alice,
            settings=schedules.Settings(name=policy, interval_seconds=60, catchup=policy),
        )
        Schedule.objects.filter(pk=s.pk).update(created_at=created, handled_until=created + timedelta(seconds=60))
        made[policy] = s
    proc, log = scheduler(tmp_path, 0, "--once")
    proc.wait(timeout=60)
    log.close()
    output = (tmp_path / "scheduler-0.log").read_text(errors="replace")
    assert proc.returncode == 0, output
    missed = [created + timedelta(seconds=60 * k) for k in range(2, 7)]

    def outcome(policy):
        rows = ScheduleFire.objects.filter(schedule=made[policy]).order_by("fire_time")
        return [(f.fire_time, f.run_id is not None, f.skipped) for f in rows]

    assert outcome(Catchup.ALL) == [(t, True, False) for t in missed]
    assert outcome(Catchup.LATEST) == [(t, False, True) for t in missed[:-1]] + [(missed[-1], True, False)]
    assert outcome(Catchup.NONE) == [(t, False, True) for t in missed]
    assert Run.objects.count() == 6, output
    for s in made.values():
        s.refresh_from_db()
        assert s.handled_until == missed[-1]
