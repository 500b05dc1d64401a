"""A distributed step's launcher (runs/distribution.py): the variables of each rank, the ranks'
prefixed output, and a failing rank failing the step and stopping the others."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from runs import distribution, executor, orchestrator, reuse
from runs.models import ComputeTarget, Isolation, StepRun, StepState
from runs.services import run_create
from stepwise.spec import Distribution, Pipeline, Step
from tests.integration.conftest import pids_matching
from tests.integration.test_execution import import_yaml


def test_pytorch_ranks_get_what_torch_distributed_reads():
    envs = distribution.rank_environments("pytorch", 2, [29500])
    assert envs == [
        {
            "RANK": str(rank),
            "WORLD_SIZE": "2",
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": "2",
            "NODE_RANK": "0",
            "GROUP_RANK": "0",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": "29500",
        }
        for rank in (0, 1)
    ]


def test_tensorflow_ranks_get_a_tf_config_naming_every_worker():
    envs = distribution.rank_environments("tensorflow", 2, [4001, 4002])
    configs = [json.loads(env["TF_CONFIG"]) for env in envs]
    for index, config in enumerate(configs):
        assert config["cluster"] == {"worker": ["127.0.0.1:4001", "127.0.0.1:4002"]}
        assert config["task"] == {"type": "worker", "index": index}


def test_mpi_ranks_get_open_mpi_and_pmi_variables():
    envs = distribution.rank_environments("mpi", 3, [])
    assert [env["OMPI_COMM_WORLD_RANK"] for env in envs] == ["0", "1", "2"]
    assert {env["OMPI_COMM_WORLD_SIZE"] for env in envs} == {"3"}
    assert [env["OMPI_COMM_WORLD_LOCAL_RANK"] for env in envs] == ["0", "1", "2"]
    assert [(env["PMI_RANK"], env["PMI_SIZE"]) for env in envs] == [("0", "3"), ("1", "3"), ("2", "3")]


def test_free_ports_differ():
    ports = distribution.free_ports(3)
    assert len(set(ports)) == 3 and all(p > 0 for p in ports)


def launch(tmp_path, kind: str, processes: int, command: str) -> subprocess.CompletedProcess:
    config = distribution.write_config(tmp_path, kind=kind, processes=processes, command=command)
    # As the executor starts it: isolated from the checkout's modules (runs/ has a selectors.py).
    return subprocess.run(
        [sys.executable, "-I", distribution.__file__, str(config)], capture_output=True, text=True, timeout=60
    )


def test_every_rank_runs_with_its_lines_prefixed(tmp_path):
    done = launch(tmp_path, "pytorch", 3, 'echo "hello from $RANK of $WORLD_SIZE"; echo second line')
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    for rank in range(3):
        assert f"[rank {rank}] hello from {rank} of 3" in lines
        assert f"[rank {rank}] second line" in lines
    assert "[stepwise] all 3 processes succeeded" in lines


def test_a_failing_rank_fails_the_step_and_stops_the_others(tmp_path):
    # Rank 0 would wait forever, as a rank in a collective waits for a dead peer.
    done = launch(tmp_path, "mpi", 2, 'if [ "$PMI_RANK" = 1 ]; then exit 3; fi; echo waiting; sleep 600')
    assert done.returncode == 3
    assert "[stepwise] rank 1 exited with code 3: stopping the other ranks" in done.stdout


@pytest.fixture
def target(settings, tmp_path, transactional_db) -> ComputeTarget:
    settings.STEPWISE_ARTIFACTS = str(tmp_path / "artifacts")
    settings.STEPWISE_WORKDIR = tmp_path / "work"
    ComputeTarget.objects.all().delete()
    return ComputeTarget.objects.create(name="local", queue=f"test-{uuid.uuid4().hex[:8]}", is_default=True)


def test_a_distributed_step_runs_its_ranks_in_the_sandbox(target, alice, team, tmp_path):
    text = """
    type: pipeline
    jobs:
      train:
        type: command
        command: echo "rank $RANK of $WORLD_SIZE at $MASTER_ADDR" > ${{outputs.out}}/rank-$RANK.txt
        outputs:
          out: {type: uri_folder}
        distribution: {type: pytorch, process_count_per_instance: 2}
    """
    run = run_create(version=import_yaml(tmp_path, text, alice, team), user=alice)
    step = StepRun.objects.get(run=run, name="train")
    assert executor.execute(step.pk, step.attempt) == "succeeded"
    step.refresh_from_db()
    assert step.state == StepState.SUCCEEDED
    out = executor.artifacts.artifact_path(step.outputs.get(name="out").artifact, "out")
    texts = sorted(p.read_text() for p in out.iterdir())
    assert texts == ["rank 0 of 2 at 127.0.0.1\n", "rank 1 of 2 at 127.0.0.1\n"]


def test_the_process_count_is_part_of_the_fingerprint_and_named_when_it_changes():
    def parts(distribution):
        step = Step(name="train", command="python train.py", distribution=distribution)
        pipeline = Pipeline(name="p", jobs={"train": step})
        return orchestrator.fingerprint_parts(pipeline, step, run_inputs={}, file_map={}, upstream_outputs={})

    plain, two, four = parts(None), parts(Distribution("pytorch", 2)), parts(Distribution("pytorch", 4))
    # A step without a distribution keeps the fingerprint earlier runs recorded.
    assert "distribution" not in plain
    assert len({orchestrator.fingerprint(p) for p in (plain, two, four)}) == 3
    assert reuse.diff_parts(two, four) == ["the distribution changed"]


@pytest.mark.parametrize("isolation", [Isolation.SANDBOX, Isolation.NONE])
def test_a_timed_out_distributed_step_leaves_no_rank_running(target, alice, team, tmp_path, isolation):
    ComputeTarget.objects.filter(pk=target.pk).update(isolation=isolation)
    marker = f"stepwise-ranks-{uuid.uuid4().hex}"
    text = f"""
    type: pipeline
    jobs:
      train:
        type: command
        # Ranks that ignore SIGTERM, as a rank stuck in a collective may.
        command: python -c "import signal as s, time; s.signal(s.SIGTERM, s.SIG_IGN); time.sleep(600)" {marker}
        distribution: {{type: pytorch, process_count_per_instance: 2}}
        limits: {{timeout: 1}}
    """
    run = run_create(version=import_yaml(tmp_path, text, alice, team), user=alice)
    step = StepRun.objects.get(run=run, name="train")
    executor.execute(step.pk, step.attempt)
    step.refresh_from_db()
    assert step.state == StepState.FAILED
    assert step.reason.startswith("timeout")
    assert pids_matching(marker) == []
