from __future__ import annotations

import textwrap

import pytest

from stepwise.spec import (
    DataPath,
    Distribution,
    InputDecl,
    JobOutput,
    OutputDecl,
    ParentInput,
    ParentOutputRef,
    dump_folder,
    load_pipeline,
    parse_text,
    to_json,
)
from stepwise.spec.bindings import RemoteRef, parse_remote_ref

from .helpers import EXAMPLES, errors_of, load_errors, one, write


@pytest.mark.parametrize("name", ["hello", "diamond", "sklearn-iris"])
def test_examples_load_without_errors(name):
    p, warnings = load_pipeline(EXAMPLES / name / "pipeline.yml", known_computes={"cpu-cluster", "local"})
    assert p.jobs
    assert all(w.severity == "warning" for w in warnings)


def test_sklearn_iris_is_normalized_from_component_files():
    p, _ = load_pipeline(EXAMPLES / "sklearn-iris" / "pipeline.yml")
    train = p.jobs["train"]
    assert train.component_name == "train_iris_model" and train.component_version == "1"
    assert train.input_decls["max_depth"] == InputDecl(
        type="integer", optional=True, description="Maximum depth of the tree; unlimited when not given."
    )
    assert train.input_decls["criterion"].enum == ["gini", "entropy", "log_loss"]
    # An unbound input with a default stays unbound: the default applies at run time.
    assert "criterion" not in train.inputs
    assert train.inputs["train_data"] == JobOutput("prep", "train_data")
    assert train.outputs == {"model_output": ParentOutputRef("trained_model")}
    assert train.has_code and "code/train/train.py" in p.files
    assert train.compute == "azureml:cpu-cluster"
    assert p.settings.default_compute == "azureml:cpu-cluster"
    assert p.upstream() == {"prep": set(), "train": {"prep"}, "evaluate": {"prep", "train"}}


def test_inline_jobs_get_inferred_decls(tmp_path):
    path = write(
        tmp_path,
        {
            "pipeline.yml": """\
                type: pipeline
                inputs:
                  rate: {type: number, default: 0.5, optional: true}
                  raw: {type: uri_file, path: ./iris.csv}
                jobs:
                  a:
                    type: command
                    command: echo ${{inputs.n}} ${{inputs.s}} ${{inputs.f}} ${{inputs.b}} ${{inputs.r}} ${{inputs.d}}
                    inputs:
                      n: 3
                      s: text
                      f: 1.5
                      b: true
                      r: ${{parent.inputs.rate}}
                      d: {type: uri_folder, path: ./local}
                      typed: {type: integer, value: 7}
                    outputs:
                      out:
                      file_out: {type: uri_file}
                  b:
                    type: command
                    command: cat ${{inputs.x}} ${{inputs.raw}}
                    inputs:
                      x: ${{parent.jobs.a.outputs.file_out}}
                      raw: ${{parent.inputs.raw}}
            """,
            "iris.csv": "1,2\n",
            "local/one.txt": "1",
            "local/sub/two.txt": "2",
        },
    )
    p, _ = load_pipeline(path)
    a, b = p.jobs["a"], p.jobs["b"]
    assert {k: d.type for k, d in a.input_decls.items()} == {
        "n": "integer",
        "s": "string",
        "f": "number",
        "b": "boolean",
        "r": "number",
        "d": "uri_folder",
        "typed": "integer",
    }
    assert a.input_decls["r"].optional is True
    assert a.inputs["d"] == DataPath("uri_folder", "data/a.d")
    assert a.inputs["typed"] == 7
    assert a.output_decls == {"out": OutputDecl(), "file_out": OutputDecl(type="uri_file")}
    assert a.outputs == {}
    assert b.input_decls["x"].type == "uri_file" and b.input_decls["raw"].type == "uri_file"
    assert p.inputs["raw"].data == DataPath("uri_file", "data/raw")
    assert p.files == {"data/raw/iris.csv": b"1,2\n", "data/a.d/one.txt": b"1", "data/a.d/sub/two.txt": b"2"}
    assert a.component_name == "a" and a.component_version == "1"


def test_tolerated_keys_are_warnings_naming_them(tmp_path):
    path = write(
        tmp_path,
        {
            "pipeline.yml": """\
                $schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
                type: pipeline
                experiment_name: exp
                tags: {team: ds}
                settings:
                  default_datastore: azureml:workspaceblobstore
                  default_comptue: azureml:cpu-cluster
                  continue_on_step_failure: true
                jobs:
                  a:
                    component: ./c.yml
                    resources: {instance_count: 1, instance_type: Standard_NC6}
                    distribution: {type: pytorch}
                    tags: {x: y}
                    outputs:
                      o: {type: uri_folder, mode: upload}
                    retry_settings: {max_retries: 2, timeout: 30}
            """,
            "c.yml": """\
                $schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
                type: command
                name: c
                outputs:
                  o: {type: uri_folder}
                command: echo ${{outputs.o}}
            """,
        },
    )
    p, warnings = load_pipeline(path)
    assert p.settings.continue_on_step_failure is True
    assert p.settings.default_datastore == "azureml:workspaceblobstore"
    assert p.jobs["a"].max_retries == 2
    text = "\n".join(str(w) for w in warnings)
    for needle in (
        "'$schema'",
        "experiment_name",
        "tags",
        "default_datastore",
        "'default_comptue'",
        "resources.instance_type",
        "mode 'upload'",
        "retry_settings.timeout",
    ):
        assert needle in text, needle
    misspelled = one(warnings, "default_comptue")
    assert misspelled.field == "settings.default_comptue" and misspelled.line == 7
    assert one(warnings, "resources.instance_type").job == "a"
    assert p.jobs["a"].distribution == Distribution(type="pytorch", processes=1)
    component_schema = [w for w in warnings if w.file.endswith("c.yml")]
    assert component_schema and component_schema[0].job == "a"


@pytest.mark.parametrize("job_type", ["import", "flow"])
def test_unsupported_job_types_are_errors(job_type):
    problem = one(
        errors_of(f"type: pipeline\njobs:\n  a:\n    type: {job_type}\n    command: x\n"), "not supported yet"
    )
    assert problem.job == "a" and problem.field == "type" and problem.line == 4 and problem.file == "pipeline.yml"


def test_unknown_job_type_is_an_error():
    one(errors_of("type: pipeline\njobs:\n  a:\n    type: banana\n"), "unknown job type 'banana'")


def test_unknown_input_type_is_an_error(tmp_path):
    path = write(
        tmp_path,
        {
            "pipeline.yml": "type: pipeline\njobs:\n  a:\n    component: ./c.yml\n",
            "c.yml": "type: command\ninputs:\n  x: {type: tensor}\ncommand: echo\n",
        },
    )
    problem = one(load_errors(path), "unknown type 'tensor'")
    assert problem.file.endswith("c.yml") and problem.job == "a" and problem.field == "inputs.x.type"
    assert problem.line == 3


def test_pipeline_level_unknown_input_type():
    problem = one(errors_of("type: pipeline\ninputs:\n  x: {type: tensor}\njobs:\n  a: {command: echo}\n"), "tensor")
    assert problem.field == "inputs.x.type" and problem.job == ""


@pytest.mark.parametrize(
    ("path", "type_"),
    [
        ("azureml://datastores/blob/paths/iris", "uri_folder"),
        ("azureml://subscriptions/s/resourcegroups/rg/workspaces/w/datastores/blob/paths/iris/x.csv", "uri_file"),
        ("https://example.com/iris.csv", "uri_file"),
    ],
)
def test_remote_data_paths_are_pipeline_inputs_resolved_per_run(path, type_):
    text = f"type: pipeline\ninputs:\n  d: {{type: {type_}, path: '{path}'}}\njobs:\n  a:\n    command: ls\n"
    spec, _ = parse_text(text)
    assert spec.inputs["d"].asset == path and spec.inputs["d"].data is None


@pytest.mark.parametrize(
    ("path", "type_"),
    [
        ("azureml://datastores/blob/paths/iris", "uri_folder"),
        ("https://example.com/iris.csv", "uri_file"),
        ("azureml:iris@latest", "uri_folder"),
        ("azureml:iris:3", "uri_file"),
    ],
)
def test_data_given_to_a_job_by_address_or_asset_becomes_a_pipeline_input_of_its_own(path, type_, tmp_path):
    """As Azure ML's samples write it (jobs.J.inputs.X.path): resolved when a run is created, as a
    pipeline input named J_X that the job binds."""
    text = (
        "type: pipeline\njobs:\n  a:\n    command: ls ${{inputs.d}}\n    inputs:\n"
        f"      d: {{type: {type_}, path: '{path}', mode: ro_mount}}\n"
    )
    spec, problems = parse_text(text)
    assert [p.message for p in problems if p.severity == "error"] == []
    assert spec.inputs["a_d"].asset == path and spec.inputs["a_d"].type == type_
    assert "job a" in spec.inputs["a_d"].description
    assert spec.jobs["a"].inputs["d"] == ParentInput("a_d")
    dump_folder(spec, tmp_path / "export")
    assert to_json(load_pipeline(tmp_path / "export" / "pipeline.yml")[0]) == to_json(spec)


def test_a_hoisted_input_takes_a_name_no_pipeline_input_has():
    text = (
        "type: pipeline\ninputs:\n  a_d: {type: string, default: x}\njobs:\n"
        "  a:\n    command: echo ${{inputs.d}} ${{inputs.s}}\n    inputs:\n"
        "      d: {type: uri_file, path: 'https://example.com/x.csv'}\n      s: ${{parent.inputs.a_d}}\n"
    )
    spec, _ = parse_text(text)
    assert spec.inputs["a_d"].type == "string" and spec.inputs["a_d_2"].asset == "https://example.com/x.csv"
    assert spec.jobs["a"].inputs == {"d": ParentInput("a_d_2"), "s": ParentInput("a_d")}


def test_a_local_path_given_to_a_job_stays_the_jobs_own_data(tmp_path):
    (tmp_path / "d.csv").write_text("1\n")
    (tmp_path / "pipeline.yml").write_text(
        "type: pipeline\njobs:\n  a:\n    command: cat ${{inputs.d}}\n    inputs:\n"
        "      d: {type: uri_file, path: ./d.csv}\n"
    )
    spec, _ = load_pipeline(tmp_path / "pipeline.yml")
    assert spec.inputs == {} and isinstance(spec.jobs["a"].inputs["d"], DataPath)


def test_a_web_address_is_a_file_input():
    text = (
        "type: pipeline\ninputs:\n  d: {type: uri_folder, path: 'https://example.com/x'}\njobs:\n  a: {command: ls}\n"
    )
    problem = one(errors_of(text), "a web address is a file")
    assert problem.field == "inputs.d"


@pytest.mark.parametrize("path", ["wasbs://c@a/x", "s3://bucket/x", "ftp://example.com/x", "file:///etc/passwd"])
def test_other_remote_schemes_are_errors(path):
    text = f"type: pipeline\ninputs:\n  d: {{type: uri_folder, path: '{path}'}}\njobs:\n  a:\n    command: ls\n"
    problem = one(errors_of(text), "is not supported: use a local path")
    assert problem.field == "inputs.d.path"


def test_a_data_asset_is_a_pipeline_input():
    data = "{type: uri_folder, path: 'azureml:iris-data:1'}"
    text = f"type: pipeline\ninputs:\n  d: {data}\njobs:\n  a:\n    command: ls\n"
    spec, _ = parse_text(text)
    assert spec.inputs["d"].asset == "azureml:iris-data:1" and spec.inputs["d"].data is None


def test_parse_text_without_folder_cannot_resolve_files():
    text = """\
        type: pipeline
        inputs:
          d: {type: uri_folder, path: ./data}
        jobs:
          a:
            code: ./src
            command: ls
          b:
            component: ./b.yml
    """
    problems = errors_of(text)
    for field in ("inputs.d.path", "code", "component"):
        problem = next(p for p in problems if p.field == field)
        assert "without a folder or zip" in problem.message


def test_parse_text_with_base_dir(tmp_path):
    write(tmp_path, {"src/m.py": "x"})
    p, _ = parse_text("type: pipeline\njobs:\n  a:\n    code: ./src\n    command: python m.py\n", base_dir=tmp_path)
    assert p.files == {"code/a/m.py": b"x"}


def test_missing_component_and_paths(tmp_path):
    path = write(
        tmp_path,
        {
            "pipeline.yml": """\
                type: pipeline
                inputs:
                  d: {type: uri_file, path: ./nope.csv}
                jobs:
                  a: {component: ./missing.yml}
                  b: {code: ./nosrc, command: ls}
            """
        },
    )
    problems = load_errors(path)
    assert one(problems, "'./nope.csv' does not exist").field == "inputs.d.path"
    assert one(problems, "'./missing.yml' does not exist").job == "a"
    assert one(problems, "'./nosrc' does not exist").job == "b"


def test_file_prefix_and_inline_component(tmp_path):
    path = write(
        tmp_path,
        {
            "pipeline.yml": """\
                type: pipeline
                jobs:
                  a: {component: "file:./c.yml"}
                  b:
                    component:
                      type: command
                      inputs: {n: {type: integer, default: 2}}
                      command: echo ${{inputs.n}}
            """,
            "c.yml": "type: command\ncommand: echo a\n",
        },
    )
    p, _ = load_pipeline(path)
    assert p.jobs["a"].command == "echo a"
    assert p.jobs["b"].input_decls == {"n": InputDecl(type="integer", default=2)}


def test_registered_components_resolve():
    calls = []

    def resolve(name, version):
        calls.append((name, version))
        if name == "train":
            return {
                "type": "command",
                "version": version or "3",
                "inputs": {"lr": {"type": "number", "default": 0.1}},
                "code": "./src",
                "command": "python train.py --lr ${{inputs.lr}}",
                "_files": {"train.py": b"print(1)"},
            }
        return None

    text = """\
        type: pipeline
        jobs:
          a: {component: "azureml:train:2"}
          b: {component: "azureml:train@latest"}
    """
    p, _ = parse_text(textwrap.dedent(text), resolve_component=resolve)
    assert calls == [("train", "2"), ("train", None)]
    assert p.jobs["a"].component_name == "train" and p.jobs["a"].component_version == "2"
    assert p.jobs["b"].component_version == "3"
    assert p.files == {"code/a/train.py": b"print(1)", "code/b/train.py": b"print(1)"}

    problem = one(
        errors_of('type: pipeline\njobs:\n  a: {component: "azureml:nope:1"}\n', resolve_component=resolve), "nope"
    )
    assert "not registered" in problem.message and problem.job == "a" and problem.field == "component"
    problem = one(errors_of('type: pipeline\njobs:\n  a: {component: "azureml:x:1"}\n'), "cannot be resolved")
    assert problem.job == "a"


def test_component_job_cannot_override_command(tmp_path):
    path = write(
        tmp_path,
        {
            "pipeline.yml": "type: pipeline\njobs:\n  a:\n    component: ./c.yml\n    command: rm -rf /\n",
            "c.yml": "type: command\ncommand: echo a\n",
        },
    )
    assert one(load_errors(path), "comes from the component").field == "command"


def test_inline_environment_inlines_conda_file(tmp_path):
    path = write(
        tmp_path,
        {
            "pipeline.yml": """\
                type: pipeline
                jobs:
                  a:
                    command: echo
                    environment:
                      image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04
                      conda_file: ./conda.yml
            """,
            "conda.yml": "name: env\ndependencies:\n  - python=3.11\n",
        },
    )
    p, _ = load_pipeline(path)
    assert p.jobs["a"].environment == {
        "image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04",
        "conda_file": {"name": "env", "dependencies": ["python=3.11"]},
    }


def test_limits_and_retries(tmp_path):
    text = """\
        type: pipeline
        jobs:
          a:
            command: echo
            limits: {timeout: 600}
            retry_settings: {max_retries: 3}
            environment_variables: {N: 1, S: text}
    """
    p, _ = parse_text(textwrap.dedent(text))
    step = p.jobs["a"]
    assert (step.timeout_s, step.max_retries, step.environment_variables) == (600, 3, {"N": "1", "S": "text"})
    problem = one(errors_of("type: pipeline\njobs:\n  a:\n    command: echo\n    limits: {timeout: soon}\n"), "soon")
    assert problem.field == "limits.timeout"


def test_job_must_be_type_pipeline_and_have_jobs():
    problems = errors_of("type: command\ncommand: echo\n")
    one(problems, "type must be 'pipeline'")
    one(problems, "'jobs' is required")
    one(errors_of("type: pipeline\njobs: {}\n"), "has no jobs")


def test_a_pipeline_job_is_given_data_by_address_too_but_not_a_job_inside_its_component(tmp_path):
    comp = """\
        type: pipeline
        inputs:
          d: {type: uri_file}
        jobs:
          inner:
            command: cat ${{inputs.x}}
            inputs:
              x: ${{parent.inputs.d}}
        """
    pipeline = """\
        type: pipeline
        jobs:
          g:
            type: pipeline
            component: ./comp.yml
            inputs:
              d: {type: uri_file, path: 'https://example.com/d.csv'}
        """
    spec, _ = load_pipeline(write(tmp_path / "ok", {"pipeline.yml": pipeline, "comp.yml": comp}))
    assert spec.inputs["g_d"].asset == "https://example.com/d.csv" and spec.groups["g"].inputs["d"] == ParentInput(
        "g_d"
    )
    # Inside a component, `parent` is the component: its inputs are what its pipeline job gives it.
    inner = comp.replace("x: ${{parent.inputs.d}}", "x: {type: uri_file, path: 'https://example.com/x.csv'}")
    problem = one(load_errors(write(tmp_path / "no", {"pipeline.yml": pipeline, "comp.yml": inner})), "x.csv")
    assert problem.job == "g__inner" and problem.field == "inputs.x.path"


@pytest.mark.parametrize(
    ("ref", "url"),
    [
        (
            "wasbs://datasets@azuremlexamples.blob.core.windows.net/iris.csv",
            "https://azuremlexamples.blob.core.windows.net/datasets/iris.csv",
        ),
        (
            "wasb://Data@Account1.blob.core.windows.net/a/b c.csv",
            "https://account1.blob.core.windows.net/data/a/b c.csv",
        ),
    ],
)
def test_an_azure_blob_is_read_over_https(ref, url):
    """Azure ML's samples name public datasets by wasbs://: the container's https address."""
    assert parse_remote_ref(ref) == RemoteRef(url=url)
    text = (
        "type: pipeline\njobs:\n  a:\n    command: cat ${{inputs.d}}\n    inputs:\n"
        f"      d: {{type: uri_file, path: '{ref}'}}\n"
    )
    spec, problems = parse_text(text)
    assert [p for p in problems if p.severity == "error"] == [] and spec.inputs["a_d"].asset == ref


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("wasbs://datasets@azuremlexamples.blob.core.windows.net/images/", "a wasbs:// blob too"),
        ("wasbs://datasets@evil.example.com/x.csv", "is not supported"),
        ("wasbs://datasets@azuremlexamples.blob.core.windows.net/", "is not supported"),
    ],
)
def test_a_blob_folder_or_another_host_is_refused(ref, message):
    text = f"type: pipeline\ninputs:\n  d: {{type: uri_folder, path: '{ref}'}}\njobs:\n  a: {{command: ls}}\n"
    one(errors_of(text), message)
