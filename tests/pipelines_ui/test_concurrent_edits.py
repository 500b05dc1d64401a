"""Two people editing one pipeline: the conflict rule (pure), the merge, and the locked save."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import replace

import pytest

from pipelines_ui import services
from pipelines_ui.concurrent_edits import part_change_text, spec_conflicts, spec_merge
from pipelines_ui.models import Pipeline, PipelineVersion
from pipelines_ui.services import EditConflict
from stepwise.spec.model import InputDecl, JobOutput, OutputDecl, ParentInput, Step
from tests.conftest import make_user
from tests.pipelines_ui.conftest import make_spec


def edited(spec, **jobs):
    """A copy of `spec` with the named steps' fields replaced: edited(spec, train={"command": "x"})."""
    new = replace(spec, jobs=dict(spec.jobs), inputs=dict(spec.inputs), files=dict(spec.files))
    for name, changes in jobs.items():
        new.jobs[name] = replace(spec.jobs[name], **changes)
    return new


def with_step(spec, step: Step, files: dict[str, bytes] | None = None):
    return services.spec_with_step(spec=spec, step=step, code_files=files or {})


EVAL = Step(
    name="eval",
    command="python eval.py ${{inputs.model}}",
    input_decls={"model": InputDecl(type="uri_folder")},
    inputs={"model": JobOutput(job="train", output="model")},
)
SCORE = Step(
    name="score",
    command="python score.py ${{inputs.data}}",
    input_decls={"data": InputDecl(type="uri_folder")},
    inputs={"data": JobOutput(job="prep", output="data")},
)


# --- the rule, on plain specs ----------------------------------------------------------


def test_edits_of_different_steps_merge_and_keep_both():
    base = make_spec()
    theirs = edited(base, prep={"command": "python prep.py --fast ${{outputs.data}}"})
    theirs.files["code/prep/prep.py"] = b"print('bob')\n"
    mine = edited(base, train={"display_name": "Alice's training"})
    mine.files["code/train/train.py"] = b"print('alice')\n"

    assert spec_conflicts(base=base, theirs=theirs, mine=mine) == []
    merged = spec_merge(base=base, theirs=theirs, mine=mine)
    assert merged.jobs["prep"].command == "python prep.py --fast ${{outputs.data}}"
    assert merged.jobs["train"].display_name == "Alice's training"
    assert merged.files == {"code/prep/prep.py": b"print('bob')\n", "code/train/train.py": b"print('alice')\n"}
    assert list(merged.jobs) == ["prep", "train"]


def test_both_editing_the_same_step_conflict():
    base = make_spec()
    theirs = edited(base, train={"command": "python train.py --bob"})
    mine = edited(base, train={"display_name": "Alice's training"})
    assert spec_conflicts(base=base, theirs=theirs, mine=mine) == ["step:train"]
    assert part_change_text(base, theirs, "step:train") == "changed its command"


def test_a_code_file_of_the_same_step_is_the_same_step():
    base = make_spec()
    theirs = edited(base)
    theirs.files["code/train/train.py"] = b"print('bob')\n"
    mine = edited(base, train={"command": "python train.py --alice"})
    assert spec_conflicts(base=base, theirs=theirs, mine=mine) == ["step:train"]
    assert part_change_text(base, theirs, "step:train") == "changed its code"


def test_the_same_change_on_both_sides_is_no_conflict():
    base = make_spec()
    theirs = edited(base, train={"max_retries": 2})
    mine = edited(base, train={"max_retries": 2})
    assert spec_conflicts(base=base, theirs=theirs, mine=mine) == []


def test_removed_or_renamed_step_conflicts_with_an_edit_of_it():
    base = make_spec()
    removed = services.spec_without_step(spec=base, name="train")
    mine = edited(base, train={"command": "python train.py --alice"})
    assert spec_conflicts(base=base, theirs=removed, mine=mine) == ["step:train"]
    assert part_change_text(base, removed, "step:train") == "removed or renamed"

    fit = replace(base.jobs["train"], name="fit", inputs=dict(base.jobs["train"].inputs))
    renamed = services.spec_with_step(spec=base, step=fit, original_name="train")
    assert "step:train" in spec_conflicts(base=base, theirs=renamed, mine=mine)


def test_renaming_a_step_conflicts_with_an_edit_of_a_step_it_feeds():
    # The rename rewires train's input, so train changed on both sides.
    base = make_spec()
    prepare = replace(base.jobs["prep"], name="prepare")
    theirs = services.spec_with_step(spec=base, step=prepare, original_name="prep")
    assert theirs.jobs["train"].inputs["data"] == JobOutput(job="prepare", output="data")
    mine = edited(base, train={"command": "python train.py --alice ${{inputs.data}} ${{outputs.model}}"})
    assert spec_conflicts(base=base, theirs=theirs, mine=mine) == ["step:train"]


def test_a_step_added_elsewhere_merges_in_its_place():
    base = make_spec()
    theirs = with_step(base, replace(SCORE), {"score.py": b"s"})
    mine = edited(base, train={"command": "python train.py --alice ${{inputs.data}} ${{outputs.model}}"})
    assert spec_conflicts(base=base, theirs=theirs, mine=mine) == []
    merged = spec_merge(base=base, theirs=theirs, mine=mine)
    assert list(merged.jobs) == ["prep", "train", "score"]
    assert merged.files["code/score/score.py"] == b"s"
    assert "--alice" in merged.jobs["train"].command


def test_my_renamed_step_keeps_its_place():
    base = make_spec()
    theirs = with_step(base, replace(SCORE))
    fit = replace(base.jobs["train"], name="fit")
    mine = services.spec_with_step(spec=base, step=fit, original_name="train")
    assert spec_conflicts(base=base, theirs=theirs, mine=mine) == []
    merged = spec_merge(base=base, theirs=theirs, mine=mine)
    assert list(merged.jobs) == ["prep", "fit", "score"]
    assert "code/fit/train.py" in merged.files and "code/train/train.py" not in merged.files


def test_my_renamed_first_step_stays_first():
    base = make_spec()
    theirs = edited(base, train={"max_retries": 2})
    mine = services.spec_with_step(spec=base, step=replace(base.jobs["prep"], name="prepare"), original_name="prep")
    assert spec_conflicts(base=base, theirs=theirs, mine=mine) == ["step:train"]  # the rename rewired train
    theirs = with_step(base, replace(SCORE, inputs={}))
    assert list(spec_merge(base=base, theirs=theirs, mine=mine).jobs) == ["prepare", "train", "score"]


def test_new_wiring_to_a_step_whose_outputs_the_other_side_changed_conflicts():
    base = make_spec()
    # Bob renames prep's output data -> rows (and rebinds train to it).
    theirs = edited(base, prep={"output_decls": {"rows": OutputDecl()}, "command": "python prep.py ${{outputs.rows}}"})
    theirs.jobs["train"] = replace(base.jobs["train"], inputs={**base.jobs["train"].inputs})
    theirs.jobs["train"].inputs["data"] = JobOutput(job="prep", output="rows")
    # Alice adds a step reading prep.data.
    mine = with_step(base, replace(SCORE))
    assert spec_conflicts(base=base, theirs=theirs, mine=mine) == ["step:prep"]
    assert part_change_text(base, theirs, "step:prep") == "changed its command, outputs"


def test_new_wiring_to_a_step_the_other_side_only_edited_merges():
    base = make_spec()
    theirs = edited(base, prep={"command": "python prep.py --fast ${{outputs.data}}"})
    mine = with_step(base, replace(SCORE))
    assert spec_conflicts(base=base, theirs=theirs, mine=mine) == []
    merged = spec_merge(base=base, theirs=theirs, mine=mine)
    assert merged.jobs["score"].inputs["data"] == JobOutput(job="prep", output="data")
    assert "--fast" in merged.jobs["prep"].command


def test_their_new_reader_conflicts_with_my_dropping_the_output_it_reads():
    base = make_spec()
    theirs = with_step(base, replace(EVAL))
    mine = edited(base, train={"output_decls": {}, "command": "python train.py ${{inputs.data}}"})
    assert spec_conflicts(base=base, theirs=theirs, mine=mine) == ["step:train"]
    assert part_change_text(base, theirs, "step:train") == "newly wired to step eval"
    # Editing train without touching its outputs goes along with the new reader.
    mine = edited(base, train={"display_name": "Alice's training"})
    assert spec_conflicts(base=base, theirs=theirs, mine=mine) == []


def test_pipeline_inputs_and_settings_are_parts_too():
    base = make_spec()
    theirs = edited(base)
    theirs.inputs["seed"] = InputDecl(type="integer", default=1)
    theirs.settings = replace(base.settings, force_rerun=True)
    mine = edited(base, train={"max_retries": 1})
    mine.inputs["lr"] = InputDecl(type="number", default=0.1)
    assert spec_conflicts(base=base, theirs=theirs, mine=mine) == []
    merged = spec_merge(base=base, theirs=theirs, mine=mine)
    assert set(merged.inputs) == {"epochs", "seed", "lr"}
    assert merged.settings.force_rerun is True and merged.jobs["train"].max_retries == 1

    mine.inputs["seed"] = InputDecl(type="string", default="x")
    mine.settings = replace(base.settings, continue_on_step_failure=True)
    assert spec_conflicts(base=base, theirs=theirs, mine=mine) == ["input:seed", "pipeline"]


def test_removing_an_input_conflicts_with_new_wiring_to_it():
    base = make_spec()
    theirs = edited(base, train={"inputs": {"data": JobOutput(job="prep", output="data")}, "input_decls": {}})
    theirs.jobs["train"].input_decls = {"data": InputDecl(type="uri_folder")}
    theirs.jobs["train"].command = "python train.py --data ${{inputs.data}} --model ${{outputs.model}}"
    del theirs.inputs["epochs"]
    mine = edited(base)
    mine.jobs["prep"] = replace(
        base.jobs["prep"],
        input_decls={"n": InputDecl(type="integer")},
        inputs={"n": ParentInput(name="epochs")},
    )
    assert spec_conflicts(base=base, theirs=theirs, mine=mine) == ["input:epochs"]


# --- the locked save -------------------------------------------------------------------


@pytest.fixture
def carol(team):
    return make_user("carol", team, "editor")


def save_train(pipeline, author, base_version, **changes) -> services.SavedEdit:
    spec = services.pipeline_base_spec(pipeline=pipeline, number=base_version) if base_version else None
    step = replace((spec or services.pipeline_working_spec(pipeline=pipeline)).jobs["train"], **changes)
    return services.pipeline_step_save(
        pipeline=pipeline, step=step, author=author, original_name="train", base_version=base_version
    )


def save_prep(pipeline, author, base_version, **changes) -> services.SavedEdit:
    step = replace(services.pipeline_base_spec(pipeline=pipeline, number=base_version).jobs["prep"], **changes)
    return services.pipeline_step_save(
        pipeline=pipeline, step=step, author=author, original_name="prep", base_version=base_version
    )


def test_same_base_is_a_plain_save(pipeline, alice):
    saved = save_train(pipeline, alice, 1, display_name="Alice's training")
    assert saved.created and saved.version.number == 2 and saved.merged_with == []
    assert services.version_spec_with_files(saved.version).jobs["train"].display_name == "Alice's training"


def test_unchanged_form_on_the_same_base_saves_nothing(pipeline, alice):
    saved = save_train(pipeline, alice, 1)
    assert not saved.created and saved.version.number == 1
    assert PipelineVersion.objects.count() == 1


def test_no_conflict_is_merged_onto_the_latest(pipeline, alice, bob):
    save_prep(pipeline, bob, 1, command="python prep.py --bob ${{outputs.data}}")
    saved = save_train(pipeline, alice, 1, display_name="Alice's training")
    assert saved.created and saved.version.number == 3
    assert [v.number for v in saved.merged_with] == [2] and saved.merged_with[0].author == bob
    assert saved.their_changes == ["step prep"]
    spec = services.version_spec_with_files(saved.version)
    assert "--bob" in spec.jobs["prep"].command  # bob's change survives
    assert spec.jobs["train"].display_name == "Alice's training"  # and alice's is in
    assert saved.version.author == alice and saved.version.message == "Edited step train"


def test_conflict_saves_nothing_and_names_the_version_its_author_and_what_changed(pipeline, alice, bob):
    save_train(pipeline, bob, 1, command="python train.py --bob ${{inputs.data}} ${{outputs.model}}")
    with pytest.raises(EditConflict) as info:
        save_train(pipeline, alice, 1, display_name="Alice's training")
    conflict = info.value
    assert conflict.base_number == 1 and conflict.latest.number == 2
    assert [(v.number, v.author) for v in conflict.versions] == [(2, bob)]
    assert conflict.authors == ["bob"]
    assert [(p.label, p.change) for p in conflict.parts] == [("step train", "changed its command")]
    assert PipelineVersion.objects.count() == 2
    pipeline.refresh_from_db()
    assert "--bob" in services.version_spec_with_files(pipeline.latest_version).jobs["train"].command


def test_conflict_names_only_the_saves_that_touched_the_step(pipeline, alice, bob, carol):
    save_train(pipeline, carol, 1, command="python train.py --carol ${{inputs.data}} ${{outputs.model}}")
    save_prep(pipeline, bob, 2, command="python prep.py --bob ${{outputs.data}}")
    with pytest.raises(EditConflict) as info:
        save_train(pipeline, alice, 1, display_name="Alice's training")
    assert [v.number for v in info.value.versions] == [2]
    assert info.value.authors == ["carol"] and info.value.latest.number == 3


def test_resubmitting_on_the_new_base_overwrites_deliberately(pipeline, alice, bob):
    save_train(pipeline, bob, 1, command="python train.py --bob ${{inputs.data}} ${{outputs.model}}")
    with pytest.raises(EditConflict):
        save_train(pipeline, alice, 1, command="python train.py --alice ${{inputs.data}} ${{outputs.model}}")
    saved = save_train(pipeline, alice, 2, command="python train.py --alice ${{inputs.data}} ${{outputs.model}}")
    assert saved.version.number == 3 and saved.merged_with == []
    assert "--alice" in services.version_spec_with_files(saved.version).jobs["train"].command


def test_unknown_base_is_refused(pipeline, alice):
    with pytest.raises(PipelineVersion.DoesNotExist):
        save_train(pipeline, alice, 7, display_name="x")
    assert PipelineVersion.objects.count() == 1


def test_a_step_added_before_the_first_version_merges_with_it(team, alice, bob, compute):
    pipeline = services.pipeline_create(team=team, name="fresh", user=alice)
    prep = make_spec(steps=1).jobs["prep"]
    services.pipeline_step_save(pipeline=pipeline, step=prep, author=bob, code_files={"prep.py": b"p"}, base_version=0)
    echo = Step(name="echo", command="echo hi")
    saved = services.pipeline_step_save(pipeline=pipeline, step=echo, author=alice, code_files={}, base_version=0)
    assert saved.version.number == 2 and [v.number for v in saved.merged_with] == [1]
    assert list(services.version_spec_with_files(saved.version).jobs) == ["prep", "echo"]


def test_two_valid_edits_that_close_a_cycle_together_conflict(team, alice, bob, compute):
    spec = make_spec(steps=1)
    spec.jobs["other"] = Step(name="other", command="echo ${{outputs.out}}", output_decls={"out": OutputDecl()})
    pipeline = services.pipeline_create(team=team, name="loop", user=alice, spec=spec)
    prep = replace(
        spec.jobs["prep"],
        input_decls={"x": InputDecl(type="uri_folder")},
        inputs={"x": JobOutput(job="other", output="out")},
        command="python prep.py ${{inputs.x}} ${{outputs.data}}",
    )
    services.pipeline_step_save(pipeline=pipeline, step=prep, author=bob, original_name="prep", base_version=1)
    other = replace(
        spec.jobs["other"],
        input_decls={"y": InputDecl(type="uri_folder")},
        inputs={"y": JobOutput(job="prep", output="data")},
        command="echo ${{inputs.y}} ${{outputs.out}}",
    )
    with pytest.raises(EditConflict) as info:
        services.pipeline_step_save(pipeline=pipeline, step=other, author=alice, original_name="other", base_version=1)
    assert any("cycle" in p.message for p in info.value.problems)
    assert info.value.authors == ["bob"]
    assert PipelineVersion.objects.filter(pipeline=pipeline).count() == 2


def test_removing_a_step_someone_just_edited_conflicts(pipeline, alice, bob):
    save_train(pipeline, bob, 1, max_retries=3)
    with pytest.raises(EditConflict):
        services.pipeline_step_remove(pipeline=pipeline, name="train", author=alice, base_version=1)
    assert "train" in services.version_spec_with_files(pipeline.versions.get(number=2)).jobs
    assert PipelineVersion.objects.count() == 2


def test_settings_merge_with_a_step_edit_and_conflict_with_settings(pipeline, alice, bob):
    save_train(pipeline, bob, 1, max_retries=3)
    base = services.pipeline_base_spec(pipeline=pipeline, number=1)
    mine = replace(base, settings=replace(base.settings, force_rerun=True))
    saved = services.pipeline_update(pipeline=pipeline, spec=mine, author=alice, base_version=1)
    spec = services.version_spec_with_files(saved.version)
    assert spec.settings.force_rerun and spec.jobs["train"].max_retries == 3

    other = replace(base, settings=replace(base.settings, continue_on_step_failure=True))
    with pytest.raises(EditConflict) as info:
        services.pipeline_update(pipeline=pipeline, spec=other, author=bob, base_version=1, name="renamed")
    assert [p.label for p in info.value.parts] == ["the pipeline's settings"]
    pipeline.refresh_from_db()
    assert pipeline.name == "demo"  # the row is not renamed by a refused save


def test_restore_refuses_when_someone_saved_since(pipeline, alice, bob):
    save_train(pipeline, alice, 1, max_retries=1)
    save_train(pipeline, bob, 2, max_retries=2)
    v1 = pipeline.versions.get(number=1)
    with pytest.raises(EditConflict) as info:
        services.pipeline_restore_version(pipeline=pipeline, version=v1, author=alice, base_version=2)
    assert info.value.authors == ["bob"] and info.value.latest.number == 3
    restored = services.pipeline_restore_version(pipeline=pipeline, version=v1, author=alice, base_version=3)
    assert restored.number == 4 and restored.content_hash == v1.content_hash


# --- two saves at once, on the database the app runs on ---------------------------------


def _race(pipeline_pk: int, edits, monkeypatch) -> list[object]:
    """Run each edit in its own thread and connection, all released together; their outcomes."""
    from django.db import connection

    real_save = services.pipeline_save_version
    idents: list[int] = []  # the racing threads
    at_save: set[int] = set()  # those that reached the write, or finished

    def waiting_for_a_lock(ident: int) -> bool:
        """Whether the thread is inside a database call that takes the pipeline's lock."""
        frame = sys._current_frames().get(ident)
        while frame is not None:
            if "django/db/backends" in frame.f_code.co_filename:
                sql = frame.f_locals.get("sql") or frame.f_locals.get("query")
                if isinstance(sql, str) and ("FOR UPDATE" in sql or sql.startswith("BEGIN")):
                    return True
            frame = frame.f_back
        return False

    def save_when_the_rival_is_there(**kwargs):
        # Holds the write until every rival has reached it too, or waits for the lock this one
        # holds: a save that checked outside the lock would now see the same latest version as
        # its rival. Waits on that condition, not on the clock.
        at_save.add(threading.get_ident())
        deadline = time.monotonic() + 30
        while not all(t in at_save or waiting_for_a_lock(t) for t in idents):
            assert time.monotonic() < deadline, "the rival save never reached the write nor the lock"
            time.sleep(0.005)
        return real_save(**kwargs)

    monkeypatch.setattr(services, "pipeline_save_version", save_when_the_rival_is_there)
    barrier = threading.Barrier(len(edits))
    results: list[object] = [None] * len(edits)

    def run(i: int) -> None:
        try:
            idents.append(threading.get_ident())
            barrier.wait()
            results[i] = edits[i](Pipeline.objects.get(pk=pipeline_pk))
        except BaseException as exc:  # noqa: BLE001 - the outcome under test
            results[i] = exc
        finally:
            at_save.add(threading.get_ident())
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(edits))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_saves_of_the_same_step_one_wins_one_conflicts(team, alice, bob, compute, monkeypatch):
    pipeline = services.pipeline_create(team=team, name="race", user=alice, spec=make_spec())
    results = _race(
        pipeline.pk,
        [
            lambda p: save_train(p, alice, 1, command="python train.py --alice ${{inputs.data}} ${{outputs.model}}"),
            lambda p: save_train(p, bob, 1, command="python train.py --bob ${{inputs.data}} ${{outputs.model}}"),
        ],
        monkeypatch,
    )
    saved = [r for r in results if isinstance(r, services.SavedEdit)]
    conflicts = [r for r in results if isinstance(r, EditConflict)]
    assert len(saved) == 1 and len(conflicts) == 1, results
    assert sorted(pipeline.versions.values_list("number", flat=True)) == [1, 2]
    assert conflicts[0].latest.number == 2 and conflicts[0].versions[0].author == saved[0].version.author


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_saves_of_different_steps_both_land(team, alice, bob, compute, monkeypatch):
    pipeline = services.pipeline_create(team=team, name="race", user=alice, spec=make_spec())
    results = _race(
        pipeline.pk,
        [
            lambda p: save_train(p, alice, 1, display_name="Alice's training"),
            lambda p: save_prep(p, bob, 1, display_name="Bob's prep"),
        ],
        monkeypatch,
    )
    assert all(isinstance(r, services.SavedEdit) for r in results), results
    assert sorted(r.version.number for r in results) == [2, 3]
    pipeline.refresh_from_db()
    latest = services.version_spec_with_files(pipeline.latest_version)
    assert latest.jobs["train"].display_name == "Alice's training"
    assert latest.jobs["prep"].display_name == "Bob's prep"
