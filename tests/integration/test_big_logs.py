"""A step that prints a million lines: the database keeps its head and tail, the artifact store its
whole log (secrets masked), the run page says what was left out, and the worker's work stays
far below one statement per line."""

from __future__ import annotations

import gzip
import hashlib
import textwrap
import uuid
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from pipelines_ui.services import pipeline_import
from runs import artifacts, executor, logs
from runs.models import RUN_TERMINAL, AttemptLog, LogChunk, RunState, StepRun
from runs.services import run_create
from runs.store_fsspec import FsspecStore
from tests.integration.conftest import wait_for
from tests.integration.test_execution import import_yaml, wait_run
from tests.integration.test_s3_store import clear_cache, s3  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration

LINES = 1_000_000
EVERY = 100_000  # the lines that print the secret

STEP = f"""
import os
secret = os.environ["STEPWISE_SECRET_TOKEN"]
for i in range({LINES}):
    print(f"line {{i}} token={{secret}}" if i % {EVERY} == 0 else f"line {{i}}")
"""

PIPELINE = """
type: pipeline
inputs:
  registry_token: {type: secret}
jobs:
  loud:
    type: command
    code: ./code
    command: python step.py
    inputs:
      token: ${{parent.inputs.registry_token}}
"""


def expected_line(i: int) -> str:
    return f"line {i} token=***" if i % EVERY == 0 else f"line {i}"


def loud_pipeline(tmp_path: Path, alice, team):
    folder = tmp_path / "loud"
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "step.py").write_text(STEP)
    (folder / "pipeline.yml").write_text(textwrap.dedent(PIPELINE))
    return pipeline_import(team=team, path=folder / "pipeline.yml", user=alice, name="loud")


def stored_lines(step_run: StepRun) -> int:
    return sum(LogChunk.objects.filter(step_run=step_run, omitted=False).values_list("line_count", flat=True))


def test_a_million_line_step_keeps_its_head_and_tail_and_its_whole_log_downloads(
    workers, alice, team, tmp_path, settings
):
    workers.start(1)
    secret = f"tok-{uuid.uuid4().hex}"
    run = run_create(version=loud_pipeline(tmp_path, alice, team), user=alice, inputs={"registry_token": secret})
    step = StepRun.objects.get(run=run, name="loud")
    bound = settings.STEPWISE_LOG_HEAD_LINES + settings.STEPWISE_LOG_TAIL_LINES + logs.CHUNK_LINES
    most = 0

    def finished() -> bool:
        # Sampled while the step prints: the table never holds more than the head and the tail.
        nonlocal most
        most = max(most, stored_lines(step))
        run.refresh_from_db()
        return run.state in RUN_TERMINAL

    wait_for(finished, timeout=300, interval=0.2, message="the run to end", details=workers.logs)
    assert run.state == RunState.SUCCEEDED, workers.logs()
    step.refresh_from_db()
    assert step.log_lines == LINES
    assert most <= bound and stored_lines(step) <= bound
    gaps = list(LogChunk.objects.filter(step_run=step, omitted=True).values_list("seq", "line_count", "attempt"))
    rows = list(LogChunk.objects.filter(step_run=step).values_list("seq", "line_count", "attempt", "omitted"))
    assert len(gaps) == 1, (rows, workers.logs())
    ((gap_seq, gap_count, _),) = gaps
    assert gap_seq == settings.STEPWISE_LOG_HEAD_LINES and gap_count >= LINES - bound

    client = Client()
    client.force_login(alice)
    url = reverse("step_log", args=[run.pk, "loud"])
    page = client.get(url).json()
    assert page["total"] == LINES and page["lines"][-1] == expected_line(LINES - 1)
    assert page["omitted"] == [{"seq": gap_seq, "count": gap_count, "text": logs.omitted_text(gap_count)}]
    html = client.get(reverse("run_step", args=[run.pk, "loud"])).content.decode()
    assert f'… {gap_count:,} lines omitted: <a href="{url}?download=1">download the full log</a>' in html

    archive = AttemptLog.objects.get(step_run=step)
    assert (archive.attempt, archive.first_seq, archive.line_count) == (1, 0, LINES)
    text = b"".join(client.get(url, {"download": "1"}).streaming_content)
    assert secret.encode() not in text
    lines = text.decode().split("\n")
    assert lines.pop() == ""
    assert len(lines) == LINES
    assert lines == [expected_line(i) for i in range(LINES)]
    compressed = b"".join(client.get(url, {"download": "gz"}).streaming_content)
    assert hashlib.sha256(gzip.decompress(compressed)).digest() == hashlib.sha256(text).digest()
    assert len(compressed) < len(text) / 4


def test_the_worker_stores_a_million_lines_in_a_few_statements_a_second_not_one_per_line(
    compute_target, alice, team, tmp_path
):
    # No worker serves the target's queue: the test runs the attempt itself, counting its statements.
    run = run_create(
        version=loud_pipeline(tmp_path, alice, team), user=alice, inputs={"registry_token": "s3cr3t-value"}
    )
    step = StepRun.objects.get(run=run, name="loud")
    with CaptureQueriesContext(connection) as queries:
        assert executor.execute(step.pk, step.attempt) == "succeeded"
    statements = [q["sql"] for q in queries.captured_queries]
    log_writes = [sql for sql in statements if "runs_logchunk" in sql]
    # The head in two rows, then (fast output) a row, a delete and the `omitted` row once a
    # second: how many seconds it takes does not matter within a wide margin.
    assert len(log_writes) <= 300, f"{len(log_writes)} statements wrote the log"
    assert len(statements) <= 600, f"{len(statements)} statements for the whole attempt"
    step.refresh_from_db()
    assert step.log_lines == LINES
    assert AttemptLog.objects.get(step_run=step).line_count == LINES


@pytest.mark.usefixtures("s3")
def test_the_whole_log_goes_to_an_s3_store_and_downloads_from_it(workers, alice, team, tmp_path, client):
    workers.extra_env.update(STEPWISE_LOG_HEAD_LINES="50", STEPWISE_LOG_TAIL_LINES="50")
    workers.start(1)
    yaml_text = "type: pipeline\njobs:\n  count:\n    type: command\n    command: seq 20000\n"
    run = wait_run(run_create(version=import_yaml(tmp_path, yaml_text, alice, team), user=alice))
    assert run.state == RunState.SUCCEEDED, workers.logs()
    archive = AttemptLog.objects.select_related("artifact").get(step_run__run=run)
    assert isinstance(artifacts.store(), FsspecStore)
    assert artifacts.artifact_intact(archive.artifact, verify_content=True)
    clear_cache()  # the web server reads it from the bucket, as on a machine without the worker's copy

    client.force_login(alice)
    url = reverse("step_log", args=[run.pk, "count"])
    expected = "".join(f"{i}\n" for i in range(1, 20001)).encode()
    assert b"".join(client.get(url, {"download": "1"}).streaming_content) == expected
    assert gzip.decompress(b"".join(client.get(url, {"download": "gz"}).streaming_content)) == expected
