"""Steps that misbehave on purpose: floods of output, bytes that are not text, markup, huge
lines, and parameter values written to break out of the command line."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from runs.models import RunState, StepState
from runs.services import run_create
from tests.integration.test_execution import import_yaml, log_text, steps_of, wait_run

pytestmark = pytest.mark.integration

TRUNCATED = " … [line truncated]"


def alice_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def test_a_100_mb_log_is_stored_and_the_log_endpoint_serves_only_its_tail(workers, alice, team, tmp_path):
    workers.start(1)
    line = "0123456789" * 10  # 101 bytes a line with its newline: about a million lines
    version = import_yaml(
        tmp_path,
        f"""
        type: pipeline
        jobs:
          loud:
            type: command
            command: yes {line} | head -c 100000000; echo; echo THE-END
        """,
        alice,
        team,
    )
    run = wait_run(run_create(version=version, user=alice), timeout=120)
    assert run.state == RunState.SUCCEEDED, workers.logs()
    step = steps_of(run)["loud"]
    expected_lines = 100_000_000 // (len(line) + 1) + 2
    assert step.log_lines == expected_lines

    client = alice_client(alice)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("step_log", args=[run.pk, "loud"]))
    assert response.status_code == 200
    page = response.json()
    assert page["total"] == expected_lines
    assert len(page["lines"]) == 500
    assert page["lines"][-1] == "THE-END"
    assert page["lines"][-3] == line
    assert page["first_seq"] == expected_lines - 500
    # The work is the tail's, not the log's: a handful of queries and about 500 lines' bytes.
    assert len(queries) <= 12, [q["sql"] for q in queries]
    assert len(response.content) < 500 * (len(line) + 20) + 4096

    # The run page shows the same tail, not the whole log.
    response = client.get(reverse("run_step", args=[run.pk, "loud"]))
    assert response.status_code == 200
    assert response.content.count(b'<div class="log-line">') == 500


HOSTILE_OUTPUT = r"""
import os, sys
with open(os.environ["STEPWISE_METRICS_FILE"], "a") as metrics:
    metrics.write(
        '{"name": "ok", "value": 1.5, "step": 2}\n'
        '{"name": "nul\\u0000name", "value": 1}\n'
        '{"name": "huge step", "value": 1, "step": 1e20}\n'
        '{"name": "nan", "value": NaN}\n{"name": "inf", "value": 1e999}\n'
        'not json\n[1]\n{"name": "no value"}\n'
        + "[" * 100_000 + "]" * 100_000 + "\n"  # nested too deeply for Python's decoder
    )
out = sys.stdout.buffer
out.write(b"latin-1: caf\xe9, broken: \xc3\x28, lone: \xff\xfe\n")
out.write(b"ansi: \x1b[31mred\x1b[0m \x1b]0;title\x07 done\n")
out.write(b"nul: a\x00b\n")
out.write(b"<img src=x onerror=alert(1)><script>alert(2)</script>\n")
out.write(b"carriage\r\n")
out.flush()
out.write(b"x" * 10_000_000)
"""


def test_hostile_output_and_metrics_are_stored_as_text_and_shown_escaped(workers, alice, team, tmp_path, settings):
    settings.STEPWISE_LOG_LINE_MAX = 1000  # the workers get it through Workers.env()
    workers.start(1)
    folder = tmp_path / "hostile"
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "emit.py").write_text(HOSTILE_OUTPUT)
    (folder / "pipeline.yml").write_text(
        "type: pipeline\njobs:\n  emit:\n    type: command\n    code: ./code\n    command: python emit.py\n"
    )
    from pipelines_ui.services import pipeline_import

    version = pipeline_import(team=team, path=folder / "pipeline.yml", user=alice, name="hostile")
    run = wait_run(run_create(version=version, user=alice))
    assert run.state == RunState.SUCCEEDED, workers.logs()
    step = steps_of(run)["emit"]
    lines = log_text(step).split("\n")

    assert lines[0] == "latin-1: caf\ufffd, broken: \ufffd(, lone: \ufffd\ufffd"
    assert lines[1] == "ansi: \x1b[31mred\x1b[0m \x1b]0;title\x07 done"
    assert lines[2] == "nul: a\ufffdb"
    assert lines[3] == "<img src=x onerror=alert(1)><script>alert(2)</script>"
    assert lines[4] == "carriage"
    # The 10 MB line without a newline: cut at the limit, marked, and the step still succeeded.
    assert lines[5] == "x" * 1000 + TRUNCATED
    assert len(lines) == 6 == step.log_lines
    # Of the metrics, only the one a database can store; the rest are dropped, not fatal.
    assert list(step.metrics.values_list("name", "value", "step")) == [("ok", 1.5, 2)]

    client = alice_client(alice)
    page = client.get(reverse("step_log", args=[run.pk, "emit"])).json()
    assert page["lines"][3] == "<img src=x onerror=alert(1)><script>alert(2)</script>"
    html = client.get(reverse("run_step", args=[run.pk, "emit"])).content.decode()
    assert "<img src=x onerror" not in html and "<script>alert(2)" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in html
    download = client.get(reverse("step_log", args=[run.pk, "emit"]), {"download": "1"})
    assert b"".join(download.streaming_content).decode().split("\n")[:6] == lines


def test_parameter_values_reach_the_step_as_one_literal_argument_each(workers, alice, team, tmp_path):
    workers.start(1)
    pwn = Path(f"/tmp/pwn-{uuid.uuid4().hex}")
    values = {
        "semicolon": f"; touch {pwn}",
        "subshell": "$(id)",
        "subshell_touch": f"$(touch {pwn}-2)",
        "backticks": f"`touch {pwn}-3`",
        "newline": f"first\nsecond; touch {pwn}-4",
        "quotes": 'it\'s "quoted" \\ and * globbed ?',
        "option": "--help",
        "pipe": f"| touch {pwn}-5 &",
    }
    names = list(values)
    inputs = "\n".join(f"  {name}: {{type: string}}" for name in names)
    step_inputs = "\n".join(f"      {name}: ${{{{parent.inputs.{name}}}}}" for name in names)
    refs = " ".join(f"${{{{inputs.{name}}}}}" for name in names)
    version = import_yaml(
        tmp_path,
        f"""type: pipeline
inputs:
{inputs}
jobs:
  echo:
    type: command
    command: python -c "import json, sys; print('ARGV=' + json.dumps(sys.argv[1:]))" {refs}
    inputs:
{step_inputs}
""",
        alice,
        team,
    )
    run = wait_run(run_create(version=version, user=alice, inputs=values))
    assert run.state == RunState.SUCCEEDED, workers.logs()
    step = steps_of(run)["echo"]
    assert step.state == StepState.SUCCEEDED
    argv_line = next(line for line in log_text(step).splitlines() if line.startswith("ARGV="))
    assert json.loads(argv_line[len("ARGV=") :]) == [values[name] for name in names]
    assert not list(pwn.parent.glob(pwn.name + "*"))
