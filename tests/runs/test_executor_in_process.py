"""The executor run in-process (no worker): late events change nothing, and a worker runs the
step a success made ready itself, without a queue round trip."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rq.job import Job

from runs import artifacts, executor, queues, reconciler, worker
from runs.models import (
    Artifact,
    ComputeTarget,
    LogChunk,
    Metric,
    Param,
    RunState,
    StepOutput,
    StepRun,
    StepState,
    Transition,
)
from runs.services import run_cancel, run_create
from tests.integration.test_execution import import_yaml
from tests.runs.conftest import set_step

PIPELINE = """
type: pipeline
jobs:
  make:
    type: command
    command: echo done > ${{outputs.out}}/data.txt
    outputs:
      out: {type: uri_folder}
  after:
    type: command
    command: echo after
    inputs:
      x: ${{parent.jobs.make.outputs.out}}
"""


@pytest.fixture(autouse=True)
def target(settings, tmp_path, transactional_db) -> ComputeTarget:
    settings.STEPWISE_ARTIFACTS = str(tmp_path / "artifacts")
    settings.STEPWISE_WORKDIR = tmp_path / "work"
    # No worker serves this queue: the test runs the steps itself.
    ComputeTarget.objects.all().delete()
    return ComputeTarget.objects.create(name="local", queue=f"test-{uuid.uuid4().hex[:8]}", is_default=True)


def test_a_completion_after_a_cancel_registers_nothing_and_advances_nothing(
    transactional_db, alice, team, tmp_path, monkeypatch
):
    run = run_create(version=import_yaml(tmp_path, PIPELINE, alice, team), user=alice)
    step = StepRun.objects.get(run=run, name="make")
    store_files = artifacts.store_files

    def cancel_while_storing(path, kind, **options):
        # The step's process has exited 0; the cancel lands while its outputs are stored.
        run_cancel(run=run)
        return store_files(path, kind, **options)

    monkeypatch.setattr(artifacts, "store_files", cancel_while_storing)

    assert executor.execute(step.pk, step.attempt) == "finished after being canceled or superseded"

    run.refresh_from_db()
    step.refresh_from_db()
    assert run.state == RunState.CANCELED
    assert step.state == StepState.CANCELED
    assert not StepOutput.objects.filter(step_run__run=run).exists()
    assert not Artifact.objects.exists()
    assert not Transition.objects.filter(step_run=step, new=StepState.SUCCEEDED).exists()
    after = StepRun.objects.get(run=run, name="after")
    assert after.state == StepState.SKIPPED
    assert not Transition.objects.filter(step_run=after, new=StepState.QUEUED).exists()


def test_a_second_delivery_of_a_finished_attempt_changes_nothing(transactional_db, alice, team, tmp_path):
    run = run_create(version=import_yaml(tmp_path, PIPELINE, alice, team), user=alice)
    step = StepRun.objects.get(run=run, name="make")
    assert executor.execute(step.pk, step.attempt) == "succeeded"
    transitions = list(Transition.objects.values_list("pk", flat=True))

    assert executor.execute(step.pk, step.attempt).startswith("stale delivery")
    assert list(Transition.objects.values_list("pk", flat=True)) == transitions
    assert StepOutput.objects.filter(step_run=step).count() == 1


# ---- a worker runs the next step of a chain itself ----------------------------------------------

CHAIN = """
type: pipeline
jobs:
  a:
    type: command
    command: echo a > ${{outputs.out}}/v.txt
    outputs:
      out: {type: uri_folder}
  b:
    type: command
    command: cat ${{inputs.x}}/v.txt > ${{outputs.out}}/v.txt && echo b >> ${{outputs.out}}/v.txt
    inputs:
      x: ${{parent.jobs.a.outputs.out}}
    outputs:
      out: {type: uri_folder}
  c:
    type: command
    command: cat ${{inputs.x}}/v.txt
    inputs:
      x: ${{parent.jobs.b.outputs.out}}
"""


def test_a_chain_runs_in_one_job_without_queueing_its_next_steps(alice, team, tmp_path, target):
    run = run_create(version=import_yaml(tmp_path, CHAIN, alice, team), user=alice)
    queue = queues.get_queue(target.queue)
    assert queue.count == 1  # a's job
    first = StepRun.objects.get(run=run, name="a")

    outcome = executor.execute_chain(first.pk, first.attempt)

    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED, outcome
    assert outcome.count("succeeded") == 3
    assert queue.count == 1, "b and c were never sent to Redis"
    steps = {s.name: s for s in run.steps.all()}
    assert {s.state for s in steps.values()} == {StepState.SUCCEEDED}
    # Each still went through queued -> running -> succeeded, in order.
    for name in "bc":
        assert list(Transition.objects.filter(step_run=steps[name]).values_list("new", flat=True)) == [
            StepState.QUEUED,
            StepState.RUNNING,
            StepState.SUCCEEDED,
        ]
    assert steps["b"].started_at >= steps["a"].finished_at
    assert "a\nb" in "\n".join(LogChunk.objects.filter(step_run=steps["c"]).values_list("text", flat=True))


def test_a_chains_working_folders_are_removed_while_the_next_step_runs_and_none_is_left(
    alice, team, tmp_path, target, monkeypatch
):
    run = run_create(version=import_yaml(tmp_path, CHAIN, alice, team), user=alice)
    first = StepRun.objects.get(run=run, name="a")
    removals = []
    remove = executor._remove_folders

    def recorded(folders):
        running = list(StepRun.objects.filter(run=run, state=StepState.RUNNING).values_list("name", flat=True))
        removals.append(([f.name for f in folders], running))
        remove(folders)

    monkeypatch.setattr(executor, "_remove_folders", recorded)
    executor.execute_chain(first.pk, first.attempt)

    # Off the path between two steps: each goes once the next one's process has started.
    assert removals == [(["a-1"], ["b"]), (["b-1"], ["c"]), (["c-1"], [])]
    assert not any(executor.attempt_workdir(s).exists() for s in run.steps.all())


def test_a_fan_out_starts_one_step_as_the_workers_and_queues_the_others(alice, team, tmp_path, target):
    fan = CHAIN.replace("${{parent.jobs.b.outputs.out}}", "${{parent.jobs.a.outputs.out}}")
    run = run_create(version=import_yaml(tmp_path, fan, alice, team), user=alice)
    queue = queues.get_queue(target.queue)
    first = StepRun.objects.get(run=run, name="a")
    queue.empty()

    outcome, started = executor._execute(first.pk, first.attempt, keep_next=True)

    assert outcome == "succeeded"
    assert started is not None and started.name in ("b", "c")
    # Started in the transaction that ended a: running as this worker's, each change audited.
    row = StepRun.objects.get(pk=started.pk)
    assert (row.state, row.worker, row.attempt) == (StepState.RUNNING, worker.worker_name(), 1)
    audit = list(Transition.objects.filter(step_run=row).values_list("old", "new"))
    assert audit == [(StepState.PENDING, StepState.QUEUED), (StepState.QUEUED, StepState.RUNNING)]
    assert [job.args for job in queue.jobs] == [
        queues.job_args(s) for s in run.steps.filter(name__in="bc").exclude(pk=started.pk)
    ]


def test_a_worker_done_with_its_branch_starts_a_sibling_waiting_in_the_queue_and_withdraws_its_job(
    alice, team, tmp_path, target
):
    fan = CHAIN.replace("${{parent.jobs.b.outputs.out}}", "${{parent.jobs.a.outputs.out}}")
    run = run_create(version=import_yaml(tmp_path, fan, alice, team), user=alice)
    queue = queues.get_queue(target.queue)
    first = StepRun.objects.get(run=run, name="a")
    queue.empty()

    outcome = executor.execute_chain(first.pk, first.attempt)

    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED, outcome
    assert outcome.count("succeeded") == 3
    # The branch a's advance sent to RQ was started from the database: its job is gone, hash and all.
    assert queue.count == 0
    assert not any(queue.connection.exists(Job.key_for(queues.job_id(s))) for s in run.steps.filter(name__in="bc"))
    for step in run.steps.all():
        assert step.worker == worker.worker_name()
        assert list(Transition.objects.filter(step_run=step).values_list("new", flat=True)) == [
            StepState.QUEUED,
            StepState.RUNNING,
            StepState.SUCCEEDED,
        ]


def test_a_retry_waiting_out_its_backoff_is_not_started_from_the_database(alice, team, tmp_path, target):
    fan = CHAIN.replace("${{parent.jobs.b.outputs.out}}", "${{parent.jobs.a.outputs.out}}")
    run = run_create(version=import_yaml(tmp_path, fan, alice, team), user=alice)
    first = StepRun.objects.get(run=run, name="a")
    _, started = executor._execute(first.pk, first.attempt, keep_next=True)
    sibling = run.steps.exclude(pk__in=[first.pk, started.pk]).get()
    # The sibling's first attempt failed and its retry waits in RQ's scheduler.
    set_step(run, sibling.name, attempt=2)

    outcome, then = executor._execute(started.pk, started.attempt, keep_next=True, started=started)

    assert outcome == "succeeded" and then is None
    assert StepRun.objects.get(pk=sibling.pk).state == StepState.QUEUED


def test_a_draining_worker_starts_nothing_more_and_the_next_step_goes_to_the_queue(
    alice, team, tmp_path, target, monkeypatch
):
    run = run_create(version=import_yaml(tmp_path, CHAIN, alice, team), user=alice)
    queue = queues.get_queue(target.queue)
    first = StepRun.objects.get(run=run, name="a")
    queue.empty()
    monkeypatch.setattr(worker, "draining", lambda: True)

    outcome, started = executor._execute(first.pk, first.attempt, keep_next=True)

    assert outcome == "succeeded" and started is None
    second = StepRun.objects.get(run=run, name="b")
    assert second.state == StepState.QUEUED
    assert [job.args for job in queue.jobs] == [queues.job_args(second)]


def test_a_started_step_whose_worker_died_before_running_it_is_retried_as_lost(alice, team, tmp_path, target, settings):
    settings.STEPWISE_RETRY_BACKOFF_S = 0
    retried = CHAIN.replace(
        "  b:\n    type: command\n", "  b:\n    type: command\n    retry_settings: {max_retries: 1}\n"
    )
    run = run_create(version=import_yaml(tmp_path, retried, alice, team), user=alice)
    queue = queues.get_queue(target.queue)
    first = StepRun.objects.get(run=run, name="a")
    queue.empty()
    # The worker ran a and started b as its own, then died before running it.
    _, started = executor._execute(first.pk, first.attempt, keep_next=True)
    assert started.name == "b" and queue.count == 0
    StepRun.objects.filter(pk=started.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))

    acted = reconciler.tick()

    assert acted["worker_lost"] == [started.pk]
    retry = StepRun.objects.get(pk=started.pk)
    assert (retry.state, retry.attempt) == (StepState.QUEUED, 2)
    assert [job.args for job in queue.jobs] == [queues.job_args(retry)]


def test_a_step_that_replaces_its_output_folder_by_a_link_fails_and_stores_nothing(
    transactional_db, alice, team, tmp_path
):
    # The link is followed by the worker, outside the sandbox: the folder it names (here a stand-in
    # for the server's var/) would be stored as the output, made read-only, and downloadable.
    secret = tmp_path / "var"
    secret.mkdir()
    (secret / "secret.key").write_text("the server's secret")
    yaml_text = f"""
type: pipeline
jobs:
  make:
    type: command
    command: rmdir ${{{{outputs.out}}}} && ln -s {secret} ${{{{outputs.out}}}}
    outputs:
      out: {{type: uri_folder}}
"""
    run = run_create(version=import_yaml(tmp_path, yaml_text, alice, team), user=alice)
    step = StepRun.objects.get(run=run, name="make")

    assert executor.execute(step.pk, step.attempt) == "failed to store outputs"

    step.refresh_from_db()
    assert step.state == StepState.FAILED
    assert "symbolic link" in step.reason
    assert not StepOutput.objects.filter(step_run=step).exists()
    assert (secret / "secret.key").read_text() == "the server's secret"
    assert os.access(secret / "secret.key", os.W_OK)


def test_a_metrics_file_that_is_a_link_is_not_read(transactional_db, alice, team, tmp_path):
    # The worker reads the metrics file outside the sandbox: a link would show on the run page
    # the lines of a file of the worker's, such as another team's step's metrics (or hang it on /dev/zero).
    theirs = tmp_path / "theirs.jsonl"
    theirs.write_text('{"name": "their_accuracy", "value": 0.97}\n{"param": "their_secret_param", "value": "x"}\n')
    yaml_text = f"""
type: pipeline
jobs:
  make:
    type: command
    command: ln -sf {theirs} "$STEPWISE_METRICS_FILE" && sleep 1
"""
    run = run_create(version=import_yaml(tmp_path, yaml_text, alice, team), user=alice)
    step = StepRun.objects.get(run=run, name="make")

    assert executor.execute(step.pk, step.attempt) == "succeeded"

    assert not Metric.objects.filter(step_run=step).exists()
    assert not Param.objects.filter(step_run=step).exists()


def test_a_metrics_file_the_step_writes_is_read(transactional_db, alice, team, tmp_path):
    yaml_text = """
type: pipeline
jobs:
  make:
    type: command
    command: >-
      echo '{"name": "accuracy", "value": 0.5}' >> "$STEPWISE_METRICS_FILE"
"""
    run = run_create(version=import_yaml(tmp_path, yaml_text, alice, team), user=alice)
    step = StepRun.objects.get(run=run, name="make")
    assert executor.execute(step.pk, step.attempt) == "succeeded"
    assert list(Metric.objects.filter(step_run=step).values_list("name", "value")) == [("accuracy", 0.5)]


def test_a_step_logging_thousands_of_points_stores_each_and_sends_a_sample_live(
    transactional_db, alice, team, tmp_path, monkeypatch
):
    from runs import broadcast

    sent = []
    monkeypatch.setattr(broadcast, "send", lambda run_id, payload, **kw: sent.append(payload))
    # 5,000 points of one name and 3 of another, written at once: one read of the file.
    yaml_text = """
type: pipeline
jobs:
  train:
    type: command
    command: >-
      python -c "import json, os;
      f = open(os.environ['STEPWISE_METRICS_FILE'], 'a');
      [f.write(json.dumps({'name': 'loss', 'value': 1 / (i + 1), 'step': i}) + chr(10)) for i in range(5000)];
      [f.write(json.dumps({'name': 'accuracy', 'value': i / 10, 'step': i}) + chr(10)) for i in range(3)]"
"""
    run = run_create(version=import_yaml(tmp_path, yaml_text, alice, team), user=alice)
    step = StepRun.objects.get(run=run, name="train")
    assert executor.execute(step.pk, step.attempt) == "succeeded"

    stored = Metric.objects.filter(step_run=step)
    assert stored.filter(name="loss").count() == 5000 and stored.filter(name="accuracy").count() == 3
    live = [(e["name"], e["index"]) for e in sent if e["type"] == "metric"]
    loss = [index for name, index in live if name == "loss"]
    assert len(loss) == executor.LIVE_POINTS_PER_NAME and loss[0] == 0 and loss[-1] == 4999
    assert loss == sorted(loss)
    assert [index for name, index in live if name == "accuracy"] == [0, 1, 2]


def test_a_live_sample_keeps_the_order_logged_and_the_first_names():
    from runs.step_records import MetricRecord, live_sample

    records = [MetricRecord(f"m{i % 150}", float(i), i // 150) for i in range(150 * 3)]
    sample = live_sample(records, per_name=2, names=100, budget=1000)
    assert {r.name for r in sample} == {f"m{i}" for i in range(100)}
    # Each name's first and last of its three points, in the order they were logged.
    assert [r.step for r in sample if r.name == "m7"] == [0, 2]
    assert sample == sorted(sample, key=records.index)
    # A budget shared by many names leaves each its first and last point.
    assert [r.step for r in live_sample(records, per_name=3, names=100, budget=100) if r.name == "m7"] == [0, 2]
    assert len(live_sample(records, per_name=3, names=100, budget=1000)) == 300
    assert [r.step for r in live_sample(records, per_name=1, names=1, budget=1)] == [0, 2]


def _events(message: dict) -> list[dict]:
    return message["events"] if message["type"] == "run.events" else [message["event"]]


def test_a_steps_end_is_published_before_the_next_step_builds_its_environment(
    alice, team, tmp_path, target, monkeypatch, run_events
):
    run = run_create(version=import_yaml(tmp_path, CHAIN, alice, team), user=alice)
    first = StepRun.objects.get(run=run, name="a")
    receive = run_events(run.pk)
    seen_before_b_builds: list[dict] = []
    use_environment = executor.Attempt.use_environment

    def building(self, environment):
        if self.step_run.name == "b":
            while not any(e.get("name") == "a" and e["state"] == StepState.SUCCEEDED for e in seen_before_b_builds):
                seen_before_b_builds.extend(_events(receive(10)))  # a TimeoutError: not sent
        use_environment(self, environment)

    # b's environment must be built (minutes, for a real one): what a's end sent cannot wait for it.
    monkeypatch.setattr(executor.environments, "built", lambda plan: False)
    monkeypatch.setattr(executor.Attempt, "use_environment", building)
    outcome = executor.execute_chain(first.pk, first.attempt)

    assert outcome.count("succeeded") == 3
    assert seen_before_b_builds


def test_the_last_steps_end_is_published_as_its_job_ends(alice, team, tmp_path, target, run_events):
    failing = CHAIN.replace("cat ${{inputs.x}}/v.txt\n", "exit 3\n")
    run = run_create(version=import_yaml(tmp_path, failing, alice, team), user=alice)
    first = StepRun.objects.get(run=run, name="a")
    receive = run_events(run.pk)

    executor.execute_chain(first.pk, first.attempt)

    events = []
    while not any(e["type"] == "run" and e["state"] == RunState.FAILED for e in events):
        events += _events(receive(10))
    assert {"name": "c", "state": StepState.FAILED} in [
        {"name": e.get("name"), "state": e.get("state")} for e in events
    ]


def test_a_steps_end_and_the_next_steps_start_write_their_audit_rows_in_one_insert(alice, team, tmp_path, target):
    run = run_create(version=import_yaml(tmp_path, CHAIN, alice, team), user=alice)
    first = StepRun.objects.get(run=run, name="a")
    _, b = executor._execute(first.pk, first.attempt, keep_next=True)

    with CaptureQueriesContext(connection) as queries:
        outcome, c = executor._execute(b.pk, b.attempt, keep_next=True, started=b)

    assert outcome == "succeeded" and c.name == "c"
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('INSERT INTO "runs_transition"')]
    assert len(inserts) == 1
    assert list(Transition.objects.filter(step_run__in=[b, c]).order_by("pk").values_list("step_run__name", "new")) == [
        ("b", StepState.QUEUED),
        ("b", StepState.RUNNING),
        ("b", StepState.SUCCEEDED),
        ("c", StepState.QUEUED),
        ("c", StepState.RUNNING),
    ]


def test_each_step_of_a_chain_after_the_first_starts_in_the_folder_made_while_the_one_before_ran(
    alice, team, tmp_path, target, monkeypatch
):
    run = run_create(version=import_yaml(tmp_path, CHAIN, alice, team), user=alice)
    first = StepRun.objects.get(run=run, name="a")
    monkeypatch.setattr(executor.sandbox_, "_spare", None)
    taken = []
    take = executor.sandbox_.take_spare
    monkeypatch.setattr(executor.sandbox_, "take_spare", lambda workdir: taken.append(take(workdir)) or taken[-1])

    outcome = executor.execute_chain(first.pk, first.attempt)

    assert outcome.count("succeeded") == 3
    assert taken == [False, True, True]
    assert "a\nb" in "\n".join(
        LogChunk.objects.filter(step_run__name="c", step_run__run=run).values_list("text", flat=True)
    )
