"""Rerun only what changed (design.md, Reuse), shown by which steps executed."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from django.db import close_old_connections

from pipelines_ui.services import pipeline_import
from runs import artifacts, services
from runs.models import Artifact, Run, RunState, StepOutput, StepState
from tests.integration.test_execution import DIAMOND, import_yaml, steps_of, wait_run

pytestmark = pytest.mark.integration

# Each step also writes its own name, so that no two steps' outputs share stored files.
STEP_SCRIPT = """\
import os, pathlib, sys
source, factor, out = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])
value = int(pathlib.Path(source, "value.txt").read_text()) if source != "-" else 1
(out / "value.txt").write_text(str(value * factor + {offset}))
(out / "step.txt").write_text(os.environ["STEPWISE_STEP"])
"""


def write_chain(
    folder: Path,
    *,
    factor: int = 2,
    data: str = "1",
    offsets: dict[int, int] | None = None,
    deterministic: bool = True,
    flag: str = "",
) -> Path:
    """A 5-step chain s1 -> ... -> s5, each step with its own code folder; s1 reads a uri_folder input."""
    offsets = offsets or {}
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "value.txt").write_text(data)
    jobs = []
    for i in range(1, 6):
        code = folder / f"code_s{i}"
        code.mkdir(exist_ok=True)
        script = STEP_SCRIPT.format(offset=offsets.get(i, 0))
        if i == 3 and flag:
            script = f"import os, sys\nif not os.path.exists({flag!r}): sys.exit('flag missing')\n" + script
        (code / "run.py").write_text(script)
        source = "${{parent.inputs.raw}}" if i == 1 else f"${{{{parent.jobs.s{i - 1}.outputs.out}}}}"
        step_factor = "${{parent.inputs.factor}}" if i == 2 else "1"
        extra = "\n    is_deterministic: false" if (i == 4 and not deterministic) else ""
        jobs.append(
            f"""  s{i}:
    type: command
    code: ./code_s{i}
    command: python run.py ${{{{inputs.source}}}} ${{{{inputs.factor}}}} ${{{{outputs.out}}}}
    inputs:
      source: {source}
      factor: {step_factor}
    outputs:
      out: {{type: uri_folder}}{extra}"""
        )
    (folder / "pipeline.yml").write_text(
        "type: pipeline\n"
        "inputs:\n"
        "  raw: {type: uri_folder, path: ./data}\n"
        f"  factor: {{type: integer, default: {factor}}}\n"
        "jobs:\n" + "\n".join(jobs) + "\n"
    )
    return folder / "pipeline.yml"


def executed(run: Run) -> set[str]:
    return {name for name, s in steps_of(run).items() if s.state == StepState.SUCCEEDED}


def final_value(run: Run) -> str:
    out = StepOutput.objects.get(step_run__run=run, step_run__name="s5", name="out")
    return (artifacts.artifact_path(out.artifact) / "value.txt").read_text()


@pytest.fixture
def chain(tmp_path, alice, team):
    def build(**kwargs):
        path = write_chain(tmp_path / "chain", **kwargs)
        return pipeline_import(team=team, path=path, user=alice, name="chain")

    return build


def run_to_end(version, user, **kwargs) -> Run:
    run = wait_run(services.run_create(version=version, user=user, **kwargs))
    assert run.state == RunState.SUCCEEDED, {n: (s.state, s.reason) for n, s in steps_of(run).items()}
    return run


ALL = {"s1", "s2", "s3", "s4", "s5"}


def test_unchanged_rerun_executes_nothing(workers, alice, chain):
    workers.start(1)
    version = chain()
    first = run_to_end(version, alice)
    assert executed(first) == ALL
    second = run_to_end(version, alice)
    assert executed(second) == set()
    assert {s.state for s in steps_of(second).values()} == {StepState.REUSED}
    assert final_value(second) == final_value(first) == "2"


def test_editing_step_3_reruns_it_and_its_downstream(workers, alice, chain):
    workers.start(1)
    run_to_end(chain(), alice)
    edited = run_to_end(chain(offsets={3: 1}), alice)
    assert executed(edited) == {"s3", "s4", "s5"}
    assert final_value(edited) == "3"
    s3 = steps_of(edited)["s3"]
    from runs.reuse import explain

    assert "the code changed" in explain(s3)["changes"]


def test_early_cutoff_when_the_edit_yields_identical_output(workers, alice, chain, tmp_path):
    workers.start(1)
    run_to_end(chain(), alice)
    (tmp_path / "chain" / "code_s3" / "NOTES.md").write_text("a comment that changes nothing")
    version = pipeline_import(
        team=alice.teams.get(), path=tmp_path / "chain" / "pipeline.yml", user=alice, name="chain"
    )
    rerun = run_to_end(version, alice)
    assert executed(rerun) == {"s3"}


def test_changing_a_literal_input_of_step_2_reruns_steps_2_to_5(workers, alice, chain):
    workers.start(1)
    version = chain()
    run_to_end(version, alice)
    changed = run_to_end(version, alice, inputs={"factor": "5"})
    assert executed(changed) == {"s2", "s3", "s4", "s5"}
    assert final_value(changed) == "5"
    from runs.reuse import explain

    assert "input factor changed from 2 to 5" in explain(steps_of(changed)["s2"])["changes"]


def test_changing_the_data_of_a_uri_folder_input_reruns_its_readers(workers, alice, chain):
    workers.start(1)
    run_to_end(chain(), alice)
    changed = run_to_end(chain(data="10"), alice)
    assert executed(changed) == ALL
    assert final_value(changed) == "20"


def test_force_rerun_and_non_deterministic_steps_execute(workers, alice, chain):
    workers.start(1)
    version = chain(deterministic=False)
    run_to_end(version, alice)
    assert executed(run_to_end(version, alice, force_rerun=True)) == ALL
    # s4 is not deterministic: it executes every time, and its identical output lets s5 be reused.
    assert executed(run_to_end(version, alice)) == {"s4"}


def test_retry_failed_steps_after_fixing_the_cause(workers, alice, chain, tmp_path):
    workers.start(1)
    flag = tmp_path / "flag"
    version = chain(flag=str(flag))
    failed = wait_run(services.run_create(version=version, user=alice))
    assert failed.state == RunState.FAILED
    assert {n: s.state for n, s in steps_of(failed).items()} == {
        "s1": StepState.SUCCEEDED,
        "s2": StepState.SUCCEEDED,
        "s3": StepState.FAILED,
        "s4": StepState.SKIPPED,
        "s5": StepState.SKIPPED,
    }
    flag.write_text("fixed")
    retry = wait_run(services.run_rerun(run=failed, user=alice, mode="failed"))
    assert retry.state == RunState.SUCCEEDED
    assert executed(retry) == {"s3", "s4", "s5"}


def test_rerun_from_a_step_forces_it_and_its_downstream(workers, alice, chain):
    workers.start(1)
    first = run_to_end(chain(), alice)
    rerun = wait_run(services.run_rerun(run=first, user=alice, mode="from", from_step="s4"))
    assert executed(rerun) == {"s4", "s5"}


def test_forcing_one_step_executes_it_alone_when_its_outputs_come_out_the_same(workers, alice, chain):
    workers.start(1)
    version = chain()
    first = run_to_end(version, alice)
    forced = run_to_end(version, alice, force_steps={"s2"})
    steps = steps_of(forced)
    # s2 executes again; s1 upstream is reused; downstream reuse is keyed on s2's output content,
    # which is the same, so s3..s5 are reused from the first run rather than executed.
    assert executed(forced) == {"s2"}
    assert steps["s2"].reused_from_id is None and steps["s2"].reason == "rerun forced"
    from runs.reuse import explain

    assert explain(steps["s2"])["summary"] == "executed: a rerun was forced"
    assert {n: s.state for n, s in steps.items() if n != "s2"} == dict.fromkeys(ALL - {"s2"}, StepState.REUSED)
    first_steps = steps_of(first)
    assert steps["s1"].reused_from_id == first_steps["s1"].pk
    assert steps["s3"].reused_from_id == first_steps["s3"].pk
    assert final_value(forced) == final_value(first) == "2"


def test_an_output_deleted_by_hand_is_made_again(workers, alice, chain):
    workers.start(1)
    version = chain()
    first = run_to_end(version, alice)
    s2_out = StepOutput.objects.get(step_run__run=first, step_run__name="s2")
    artifacts.remove_artifact_files(s2_out.artifact)
    rerun = run_to_end(version, alice)
    assert executed(rerun) == {"s2"}
    assert "missing or corrupted" in steps_of(rerun)["s2"].reason


def test_a_corrupted_output_is_not_reused(workers, alice, chain):
    workers.start(1)
    version = chain()
    first = run_to_end(version, alice)
    out = StepOutput.objects.get(step_run__run=first, step_run__name="s5").artifact
    target = artifacts.artifact_path(out) / "value.txt"
    target.chmod(0o644)
    target.write_text("tampered")
    rerun = run_to_end(version, alice)
    assert executed(rerun) == {"s5"}


def test_two_simultaneous_runs_of_a_new_step_both_succeed(workers, alice, team, tmp_path):
    workers.start(2)
    version = import_yaml(tmp_path, DIAMOND, alice, team, name="twins")
    runs: list[Run] = []

    def start():
        runs.append(services.run_create(version=version, user=alice))
        close_old_connections()

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for run in runs:
        assert wait_run(Run.objects.get(pk=run.pk)).state == RunState.SUCCEEDED
    # Equal outputs are stored once, and every recorded artifact is intact.
    for artifact in Artifact.objects.all():
        assert artifacts.artifact_intact(artifact, verify_content=True)
    assert Artifact.objects.count() == len({o.artifact_id for o in StepOutput.objects.all()})
    shutil.rmtree(tmp_path / "twins")


def test_yaml_force_rerun_setting_executes_every_step(workers, alice, team, tmp_path):
    workers.start(1)
    forced = DIAMOND.replace("display_name: diamond", "display_name: diamond\nsettings:\n  force_rerun: true")
    version = import_yaml(tmp_path, forced, alice, team, name="forced")
    wait_run(services.run_create(version=version, user=alice))
    second = wait_run(services.run_create(version=version, user=alice))
    assert executed(second) == {"a", "b", "c", "d"}


def test_a_step_is_reused_only_from_its_own_teams_runs(workers, alice, charlie, team, other_team, tmp_path):
    # A secret input counts only as given or not: another team's identical step may have made
    # its outputs with credentials this team does not hold.
    workers.start(1)
    path = write_chain(tmp_path / "chain")
    ours = run_to_end(pipeline_import(team=team, path=path, user=alice, name="chain"), alice)
    theirs_version = pipeline_import(team=other_team, path=path, user=charlie, name="chain")
    theirs = run_to_end(theirs_version, charlie)
    assert executed(ours) == executed(theirs) == ALL
    again = run_to_end(theirs_version, charlie)
    assert executed(again) == set()
    assert {s.reused_from.run_id for s in steps_of(again).values()} == {theirs.pk}
