from __future__ import annotations

import pytest

from pipelines_ui import services
from pipelines_ui.models import FileBlob, Pipeline, PipelineVersion
from pipelines_ui.selectors import known_compute_names
from stepwise.spec import SpecError
from stepwise.spec.model import JobOutput, OutputDecl, Step
from tests.pipelines_ui.conftest import make_spec


def test_known_compute_names_include_aliases(compute):
    assert {"local", "cpu-cluster"} <= known_compute_names()


def test_create_saves_version_one_with_blobs(team, alice, compute):
    pipeline = services.pipeline_create(team=team, name="demo", user=alice, spec=make_spec())
    pipeline.refresh_from_db()
    version = pipeline.latest_version
    assert version.number == 1
    assert version.author == alice
    assert set(version.files) == {"code/prep/prep.py", "code/train/train.py"}
    assert bytes(FileBlob.objects.get(sha256=version.files["code/prep/prep.py"]).content) == b"print('prep')\n"
    assert len(version.content_hash) == 64


def test_create_without_spec_has_no_version(team, alice):
    pipeline = services.pipeline_create(team=team, name="empty", user=alice)
    assert pipeline.latest_version is None
    assert services.pipeline_working_spec(pipeline=pipeline).jobs == {}


def test_invalid_spec_saves_nothing(team, alice, compute):
    spec = make_spec()
    spec.jobs["train"].compute = "nowhere"
    with pytest.raises(SpecError) as info:
        services.pipeline_create(team=team, name="demo", user=alice, spec=spec)
    assert any(p.job == "train" and p.field == "compute" for p in info.value.problems)
    assert not Pipeline.objects.exists()
    assert not FileBlob.objects.exists()


def test_versions_are_numbered_and_identical_content_is_not_a_new_version(pipeline, alice):
    spec = services.version_spec_with_files(pipeline.latest_version)
    same = services.pipeline_save_version(pipeline=pipeline, spec=spec, author=alice)
    assert same.number == 1
    spec.jobs["prep"].command = "python prep.py --out ${{outputs.data}} --fast"
    v2 = services.pipeline_save_version(pipeline=pipeline, spec=spec, author=alice, message="faster")
    assert v2.number == 2
    pipeline.refresh_from_db()
    assert pipeline.latest_version == v2
    assert list(pipeline.versions.values_list("number", flat=True)) == [2, 1]


def test_unchanged_files_are_shared_between_versions(pipeline, alice):
    spec = services.version_spec_with_files(pipeline.latest_version)
    spec.jobs["prep"].display_name = "Prepare"
    services.pipeline_save_version(pipeline=pipeline, spec=spec, author=alice)
    assert FileBlob.objects.count() == 2


def test_version_spec_round_trips(pipeline):
    spec = services.version_spec_with_files(pipeline.latest_version)
    assert spec.jobs["train"].inputs["data"] == JobOutput(job="prep", output="data")
    assert spec.files["code/train/train.py"] == b"print('train')\n"


def test_step_save_adds_and_renames_with_references(pipeline, alice):
    step = Step(
        name="score",
        command="python score.py ${{outputs.scores}}",
        output_decls={"scores": OutputDecl()},
    )
    v2 = services.pipeline_step_save(pipeline=pipeline, step=step, author=alice, code_files={"score.py": b"s"}).version
    assert v2.number == 2 and "code/score/score.py" in v2.files

    spec = services.version_spec_with_files(v2)
    renamed = spec.jobs["prep"]
    renamed.name = "prepare"
    v3 = services.pipeline_step_save(pipeline=pipeline, step=renamed, author=alice, original_name="prep").version
    spec3 = services.version_spec_with_files(v3)
    assert "prep" not in spec3.jobs and "prepare" in spec3.jobs
    assert spec3.jobs["train"].inputs["data"] == JobOutput(job="prepare", output="data")
    assert "code/prepare/prep.py" in spec3.files and "code/prep/prep.py" not in spec3.files


def test_step_save_rejects_duplicate_name(pipeline, alice):
    with pytest.raises(SpecError, match="already exists"):
        services.pipeline_step_save(pipeline=pipeline, step=Step(name="train", command="x"), author=alice)
    assert PipelineVersion.objects.count() == 1


def test_step_remove_refuses_when_others_depend_on_it(pipeline, alice):
    with pytest.raises(SpecError, match="feeds train"):
        services.pipeline_step_remove(pipeline=pipeline, name="prep", author=alice)
    v2 = services.pipeline_step_remove(pipeline=pipeline, name="train", author=alice).version
    assert v2.number == 2
    assert "code/train/train.py" not in v2.files


def test_restore_makes_a_new_version(pipeline, alice):
    services.pipeline_step_remove(pipeline=pipeline, name="train", author=alice)
    v3 = services.pipeline_restore_version(pipeline=pipeline, version=pipeline.versions.get(number=1), author=alice)
    assert v3.number == 3
    assert v3.content_hash == pipeline.versions.get(number=1).content_hash


def test_import_creates_then_adds_versions(team, alice, compute, tmp_path):
    folder = tmp_path / "p"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "hello.py").write_text("print('hi')\n")
    (folder / "pipeline.yml").write_text(
        "type: pipeline\n"
        "display_name: hello_pipeline\n"
        "jobs:\n"
        "  hello:\n"
        "    type: command\n"
        "    code: ./src\n"
        "    command: python hello.py\n"
        "    compute: azureml:cpu-cluster\n"
    )
    v1 = services.pipeline_import(team=team, path=folder / "pipeline.yml", user=alice)
    assert v1.number == 1 and v1.pipeline.name == "hello_pipeline"
    assert "code/hello/hello.py" in v1.files
    (folder / "src" / "hello.py").write_text("print('hello')\n")
    v2 = services.pipeline_import(team=team, path=folder / "pipeline.yml", user=alice)
    assert v2.pipeline == v1.pipeline and v2.number == 2


def test_import_invalid_saves_nothing(team, alice, compute, tmp_path):
    path = tmp_path / "pipeline.yml"
    path.write_text("type: pipeline\njobs:\n  a:\n    type: command\n    command: x\n    compute: nowhere\n")
    with pytest.raises(SpecError):
        services.pipeline_import(team=team, path=path, user=alice)
    assert not Pipeline.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_saves_get_distinct_numbers(team, alice, compute):
    import threading

    from django.db import connection

    pipeline = services.pipeline_create(team=team, name="race", user=alice, spec=make_spec())
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def save(i: int) -> None:
        try:
            spec = make_spec()
            spec.jobs["prep"].display_name = f"variant {i}"
            barrier.wait()
            services.pipeline_save_version(pipeline=Pipeline.objects.get(pk=pipeline.pk), spec=spec, author=alice)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=save, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    numbers = sorted(pipeline.versions.values_list("number", flat=True))
    assert numbers == [1, 2, 3, 4, 5]
    pipeline.refresh_from_db()
    assert pipeline.latest_version.number == 5
