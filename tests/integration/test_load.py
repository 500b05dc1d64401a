"""Many runs at once on two workers: everything finishes, every step executes exactly once."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import Client
from django.utils.crypto import get_random_string

from runs.models import Run, RunState, StepRun, StepState, Transition
from tests.browser.conftest import serve_app
from tests.integration.conftest import wait_for
from tests.integration.test_execution import import_yaml

pytestmark = pytest.mark.integration

RUNS = 50
WIDTH = 8  # start -> 8 parallel steps -> join: 10 steps, with a fan-out and a join per run


def fan_yaml(executions) -> str:
    # Each execution appends one line (O_APPEND: lines from concurrent steps never interleave).
    record = f'echo "$STEPWISE_RUN_ID $STEPWISE_STEP $STEPWISE_ATTEMPT" >> {executions}'
    middle = "\n".join(
        f"""  m{i}:
    type: command
    command: {record}
    inputs:
      x: ${{{{parent.jobs.start.outputs.out}}}}
    outputs:
      out: {{type: uri_folder}}"""
        for i in range(WIDTH)
    )
    joined = "\n".join(f"      x{i}: ${{{{parent.jobs.m{i}.outputs.out}}}}" for i in range(WIDTH))
    return f"""type: pipeline
jobs:
  start:
    type: command
    command: {record}
    outputs:
      out: {{type: uri_folder}}
{middle}
  join:
    type: command
    command: {record}
    inputs:
{joined}
"""


def submit_over_http(base: str, pipeline_id: int, user, count: int) -> list[int]:
    """POST the run form `count` times at once, as a signed-in user would; returns the run ids."""
    client = Client()
    client.force_login(user)
    token = get_random_string(32)  # a CSRF secret of our own, sent as cookie and form field
    cookie = f"sessionid={client.cookies['sessionid'].value}; csrftoken={token}"
    # Forced, so that no step is reused from an earlier run of the same version.
    body = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "force_rerun": "on"}).encode()

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)

    def submit(_: int) -> int:
        request = urllib.request.Request(f"{base}/pipelines/{pipeline_id}/run/", data=body, headers={"Cookie": cookie})
        try:
            opener.open(request, timeout=60)
        except urllib.error.HTTPError as redirect:
            assert redirect.code == 302, redirect.read()[:2000]
            return int(re.fullmatch(r"/runs/(\d+)/", redirect.headers["Location"]).group(1))
        raise AssertionError("the run form did not redirect to the new run")

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(submit, range(count)))


def test_fifty_runs_of_ten_steps_submitted_at_once_over_http_on_two_workers(workers, alice, team, tmp_path):
    executions = tmp_path / "executions.txt"
    version = import_yaml(tmp_path, fan_yaml(executions), alice, team, name="fan")
    workers.start(2)
    with serve_app(tmp_path) as base:
        began = time.monotonic()
        ids = submit_over_http(base, version.pipeline_id, alice, RUNS)
    assert len(set(ids)) == RUNS

    def unfinished() -> int:
        return Run.objects.filter(pk__in=ids).exclude(state__in=[RunState.SUCCEEDED, RunState.FAILED]).count()

    wait_for(
        lambda: unfinished() == 0,
        timeout=180,
        interval=0.5,
        message="every run to end",
        details=lambda: Counter(StepRun.objects.filter(run_id__in=ids).values_list("state", flat=True)),
    )
    elapsed = time.monotonic() - began

    assert set(Run.objects.filter(pk__in=ids).values_list("state", flat=True)) == {RunState.SUCCEEDED}
    steps = StepRun.objects.filter(run_id__in=ids)
    assert steps.count() == RUNS * (WIDTH + 2)
    assert set(steps.values_list("state", "attempt")) == {(StepState.SUCCEEDED, 1)}
    # Exactly once: one start per step in the audit trail, one line per step from the steps themselves.
    starts = Counter(
        Transition.objects.filter(step_run__run_id__in=ids, new=StepState.RUNNING).values_list("step_run_id", flat=True)
    )
    assert len(starts) == RUNS * (WIDTH + 2) and set(starts.values()) == {1}
    lines = executions.read_text().splitlines()
    assert len(lines) == len(set(lines)) == RUNS * (WIDTH + 2)
    assert {line.split()[2] for line in lines} == {"1"}
    # The join ran after all of its inputs, in every run.
    for run_id in ids:
        by_name = {s.name: s for s in steps.filter(run_id=run_id)}
        assert all(by_name["join"].started_at >= by_name[f"m{i}"].finished_at for i in range(WIDTH))
    logs = workers.logs()
    for problem in ("database is locked", "deadlock", "Traceback"):
        assert problem not in logs, logs[-5000:]
    latencies = [(r.finished_at - r.created_at).total_seconds() for r in Run.objects.filter(pk__in=ids)]
    print(
        f"{RUNS * (WIDTH + 2)} steps in {elapsed:.1f} s ({RUNS * (WIDTH + 2) / elapsed:.1f} steps/s);"
        f" run latency median {sorted(latencies)[RUNS // 2]:.1f} s, max {max(latencies):.1f} s"
    )
