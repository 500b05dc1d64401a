"""The driver run as a step runs it: a subprocess in the code folder, with real worker processes."""

from __future__ import annotations

import json
import multiprocessing
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stepwise.parallel.driver import Batch, Worker, parse_args, result_lines
from stepwise.spec import render_command
from stepwise.spec.model import ParallelSettings
from stepwise.spec.parallel import driver_command

ROOT = Path(__file__).resolve().parents[3]

SCORE = """\
    import os, sys

    def init():
        print(f"init {os.getpid()} {sys.argv[1:]}", flush=True)

    def run(mini_batch):
        rows = []
        for path in mini_batch:
            name = os.path.basename(path)
            if name == "file_07.txt":
                raise ValueError("cannot score " + name)
            rows.append(name + " " + open(path).read().strip())
        return rows
"""


def make_job(tmp_path: Path, script: str = SCORE, files: int = 20) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    (code / "score.py").write_text(textwrap.dedent(script))
    data = tmp_path / "data"
    data.mkdir()
    for i in range(1, files + 1):
        (data / f"file_{i:02}.txt").write_text(f"value {i}\n")
    (tmp_path / "out").mkdir()
    return tmp_path


def drive(job: Path, *args: str, data: str = "data") -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        STEPWISE_METRICS_FILE=str(job / "metrics.jsonl"),
    )
    command = [sys.executable, "-m", "stepwise.parallel.driver", "--input-data", str(job / data)]
    command += ["--entry-script", "score.py", "--append-row-to", str(job / "out"), *args]
    return subprocess.run(command, cwd=job / "code", env=env, capture_output=True, text=True, timeout=120)


def rows(job: Path) -> list[str]:
    return (job / "out" / "parallel_run_step.txt").read_text().splitlines()


def metrics(job: Path, name: str) -> list[float]:
    records = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    return [r["value"] for r in records if r.get("name") == name]


def test_a_failed_mini_batch_under_its_threshold_leaves_the_others_rows(tmp_path):
    job = make_job(tmp_path)
    result = drive(
        job, "--mini-batch-size", "1", "--max-concurrency-per-instance", "2", "--mini-batch-error-threshold", "1"
    )
    assert result.returncode == 0, result.stderr
    expected = [f"file_{i:02}.txt value {i}" for i in range(1, 21) if i != 7]
    assert rows(job) == expected
    # Tried three times (max_retries 2 by default), then counted once.
    assert result.stdout.count("mini-batch 7/20 (file_07.txt) failed on try") == 2
    assert "mini-batch 7/20 (file_07.txt): ValueError: cannot score file_07.txt: mini-batch failed" in result.stdout
    assert "mini-batch 3/20 done (file_03.txt)" in result.stdout
    assert "19 of 20 mini-batches succeeded, 1 failed" in result.stdout
    assert sorted(metrics(job, "minibatches_done")) == list(range(1, 21))
    assert metrics(job, "minibatches_failed") == [1]
    # Two worker processes, each initialized once.
    assert result.stdout.count("init ") == 2


def test_the_same_job_with_threshold_zero_fails_naming_the_mini_batch(tmp_path):
    job = make_job(tmp_path)
    result = drive(job, "--mini-batch-size", "1", "--mini-batch-error-threshold", "0", "--max-retries", "0")
    assert result.returncode == 1
    assert (
        "parallel job failed: 1 failed mini-batch, more than mini_batch_error_threshold 0: "
        "mini-batch 7/20 (file_07.txt): ValueError: cannot score file_07.txt"
    ) in result.stderr


def test_error_threshold_counts_failed_files(tmp_path):
    job = make_job(tmp_path)
    # Mini-batches of 5 files: the one with file_07 fails whole, 5 failed files.
    assert drive(job, "--mini-batch-size", "5", "--error-threshold", "5", "--max-retries", "0").returncode == 0
    assert len(rows(job)) == 15
    result = drive(job, "--mini-batch-size", "5", "--error-threshold", "4", "--max-retries", "0")
    assert result.returncode == 1
    assert "5 failed items, more than error_threshold 4" in result.stderr
    assert "mini-batch 2/4 (file_06.txt .. file_10.txt)" in result.stderr


def test_program_arguments_reach_init_as_sys_argv(tmp_path):
    job = make_job(tmp_path, files=1)
    result = drive(job, "--", "--scale", "2 x")
    assert result.returncode == 0, result.stderr
    assert "['--scale', '2 x']" in result.stdout


def test_a_tabular_file_is_split_into_rows(tmp_path):
    script = """\
        def run(mini_batch):
            # As in Azure ML: a tabular mini-batch is a pandas DataFrame (pandas is pinned).
            assert type(mini_batch).__name__ == "DataFrame", type(mini_batch)
            return [f"{r['id']}:{int(r['x']) * 2}" for r in mini_batch.to_dict("records")]
    """
    job = make_job(tmp_path, script, files=0)
    lines = ["id,x"] + [f"r{i},{i}" for i in range(10)]
    (job / "table.csv").write_text("\n".join(lines) + "\n")
    result = drive(job, "--mini-batch-size", "4", data="table.csv")
    assert result.returncode == 0, result.stderr
    assert rows(job) == [f"r{i}:{i * 2}" for i in range(10)]
    assert "mini-batch 3/3 done (rows 9-10)" in result.stdout


def test_fewer_results_than_rows_fail_the_mini_batch(tmp_path):
    script = """\
        def run(mini_batch):
            return [1] if len(mini_batch) == 3 else [1] * len(mini_batch)
    """
    job = make_job(tmp_path, script, files=0)
    (job / "table.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(7)))
    result = drive(job, "--mini-batch-size", "3", "--mini-batch-error-threshold", "0", data="table.csv")
    assert result.returncode == 1
    assert "run() returned 1 results for 3 items" in result.stderr


def test_a_mini_batch_past_its_timeout_is_killed_and_retried(tmp_path):
    script = """\
        import os, time

        def run(mini_batch):
            if any(p.endswith("file_02.txt") for p in mini_batch):
                time.sleep(600)
            return [os.path.basename(p) for p in mini_batch]
    """
    job = make_job(tmp_path, script, files=3)
    result = drive(job, "--mini-batch-size", "1", "--timeout", "1", "--max-retries", "1")
    assert result.returncode == 0, result.stderr
    assert rows(job) == ["file_01.txt", "file_03.txt"]
    assert "mini-batch 2/3 (file_02.txt) failed on try 1 of 2: timed out after 1s; retrying" in result.stdout
    assert "mini-batch 2/3 (file_02.txt): timed out after 1s: mini-batch failed" in result.stdout


def test_a_worker_that_dies_is_replaced(tmp_path):
    script = """\
        import os

        def init():
            print("init", flush=True)

        def run(mini_batch):
            if any(p.endswith("file_02.txt") for p in mini_batch):
                os._exit(9)
            return [os.path.basename(p) for p in mini_batch]
    """
    job = make_job(tmp_path, script, files=4)
    result = drive(job, "--mini-batch-size", "1", "--max-retries", "0")
    assert result.returncode == 0, result.stderr
    assert rows(job) == ["file_01.txt", "file_03.txt", "file_04.txt"]
    assert "mini-batch 2/4 (file_02.txt): its worker process exited (9)" in result.stdout
    assert result.stdout.count("init") == 2


def test_a_failing_init_fails_the_job(tmp_path):
    job = make_job(tmp_path, "def init():\n    raise RuntimeError('no model')\n\ndef run(b):\n    return b\n", files=2)
    result = drive(job)
    assert result.returncode == 1
    assert "init() of score.py failed: RuntimeError: no model" in result.stderr


def test_a_worker_whose_init_failed_and_exited_is_not_given_a_mini_batch(tmp_path, monkeypatch):
    # The race behind a BrokenPipeError seen in CI: the worker sends "init_failed" and exits
    # before the driver hands it its first mini-batch.
    job = make_job(tmp_path, "def init():\n    raise RuntimeError('no model')\n\ndef run(b):\n    return b\n", files=1)
    monkeypatch.chdir(job / "code")
    worker = Worker(multiprocessing.get_context("fork"), "score.py", [], "INFO")
    worker.proc.join(timeout=30)
    assert worker.proc.exitcode == 0
    assert worker.give(Batch(0, "file_01.txt", 1, [str(job / "data" / "file_01.txt")]), 0) is False
    assert worker.batch is None
    kind, _, trace = worker.conn.recv()
    assert kind == "init_failed" and "RuntimeError: no model" in trace
    worker.kill()


@pytest.mark.parametrize(("entry", "message"), [("../score.py", "outside the code folder"), ("nope.py", "not in")])
def test_an_entry_script_outside_or_missing_is_refused(tmp_path, entry, message):
    job = make_job(tmp_path, files=1)
    (job / "score.py").write_text("def run(b):\n    return b\n")
    result = drive(job, "--entry-script", entry)
    assert result.returncode == 2
    assert message in result.stderr and not (job / "out" / "parallel_run_step.txt").exists()


def test_the_spec_command_is_what_the_driver_reads():
    settings = ParallelSettings(
        input_data="data",
        entry_script="sub/score.py",
        mini_batch_size="10kb",
        program_arguments="--model ${{inputs.model}} --k 3",
        append_row_to="scores",
        instance_count=2,
        max_concurrency_per_instance=3,
        error_threshold=5,
        mini_batch_error_threshold=0,
        max_retries=4,
        timeout_s=9,
        logging_level="DEBUG",
    )
    command = render_command(
        driver_command(settings), inputs={"data": "/in put", "model": "/m"}, outputs={"scores": "/out"}
    )
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "stepwise.parallel.driver"]
    args, program = parse_args(words[3:])
    assert (args.input_data, args.entry_script, args.mini_batch_size, args.append_row_to) == (
        "/in put",
        "sub/score.py",
        "10kb",
        "/out",
    )
    assert (args.instance_count, args.max_concurrency_per_instance) == (2, 3)
    assert (args.error_threshold, args.mini_batch_error_threshold, args.max_retries, args.timeout) == (5, 0, 4, 9)
    assert args.logging_level == "DEBUG"
    assert program == ["--model", "/m", "--k", "3"]
    assert not args.files
    settings.files = True
    command = render_command(driver_command(settings), inputs={"data": "/d", "model": "/m"}, outputs={"scores": "/o"})
    assert parse_args(shlex.split(command)[3:])[0].files


def test_a_uri_folder_holding_an_mltable_file_is_handed_as_files(tmp_path):
    # Azure ML hands a uri_folder's files to run(), whatever they are; only an mltable input is a table.
    script = """\
        import os
        def run(mini_batch):
            assert isinstance(mini_batch, list), type(mini_batch)
            return sorted(os.path.basename(p) for p in mini_batch)
    """
    job = make_job(tmp_path, script, files=2)
    (job / "data" / "MLTable").write_text("paths:\n  - file: ./file_01.txt\n")
    result = drive(job, "--files", "--mini-batch-size", "10")
    assert result.returncode == 0, result.stderr
    assert rows(job) == ["MLTable", "file_01.txt", "file_02.txt"]


def test_result_lines_take_lists_and_refuse_what_is_not_rows():
    assert result_lines(["a", 1, {"k": "v"}, "two\nlines"]) == ["a", "1", '{"k": "v"}', "two lines"]
    for bad in (None, "text", 5):
        with pytest.raises(TypeError, match="return a list or a pandas DataFrame"):
            result_lines(bad)


def test_result_lines_write_a_dataframes_rows_space_separated():
    import pandas

    frame = pandas.DataFrame({"file": ["a.txt", "b.txt"], "score": [0.5, 2]})
    assert result_lines(frame) == ["a.txt 0.5", "b.txt 2.0"]
