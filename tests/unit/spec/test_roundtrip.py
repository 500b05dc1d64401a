"""Export and import give back the same Pipeline: by fixtures and by generated DAGs."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepwise.spec import (
    DataPath,
    InputDecl,
    JobOutput,
    OutputDecl,
    ParentInput,
    ParentOutputRef,
    Pipeline,
    Settings,
    Step,
    dump_folder,
    from_json,
    load_pipeline,
    to_json,
    to_zip_bytes,
    validate_pipeline,
)

from .helpers import EXAMPLES


def roundtrip_folder(p: Pipeline, dest: Path) -> Pipeline:
    dump_folder(p, dest)
    loaded, _warnings = load_pipeline(dest / "pipeline.yml")
    return loaded


def roundtrip_json(p: Pipeline) -> Pipeline:
    # Through real JSON text, as the database stores it.
    return from_json(json.loads(json.dumps(to_json(p))), p.files)


@pytest.mark.parametrize("name", ["hello", "diamond", "sklearn-iris"])
def test_examples_round_trip(name, tmp_path):
    p, _ = load_pipeline(EXAMPLES / name / "pipeline.yml")
    assert roundtrip_folder(p, tmp_path / "export") == p
    assert roundtrip_json(p) == p


def test_zip_round_trip(tmp_path):
    p, _ = load_pipeline(EXAMPLES / "sklearn-iris" / "pipeline.yml")
    data = to_zip_bytes(p)
    assert data == to_zip_bytes(p)  # deterministic
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path)
    assert "pipeline.yml" in names and "components/train.yml" in names and "code/train/train.py" in names
    loaded, _ = load_pipeline(tmp_path / "pipeline.yml")
    assert loaded == p


def test_export_looks_like_azure_ml(tmp_path):
    p, _ = load_pipeline(EXAMPLES / "sklearn-iris" / "pipeline.yml")
    dump_folder(p, tmp_path)
    pipeline_yml = (tmp_path / "pipeline.yml").read_text()
    assert "type: pipeline" in pipeline_yml
    assert "component: ./components/train.yml" in pipeline_yml
    assert "${{parent.jobs.prep.outputs.train_data}}" in pipeline_yml
    assert "default_compute: azureml:cpu-cluster" in pipeline_yml
    component = (tmp_path / "components" / "train.yml").read_text()
    for needle in ("$schema:", "type: command", "name: train_iris_model", "code: ../code/train", "optional: true"):
        assert needle in component, needle
    assert "$[[--max_depth ${{inputs.max_depth}}]]" in component


def test_timeouts_retries_and_empty_folders(tmp_path):
    p = Pipeline(
        name="p",
        settings=Settings(default_compute="azureml:cpu-cluster", force_rerun=True),
        inputs={"d": InputDecl(type="uri_folder", data=DataPath("uri_folder", "data/d"), description="empty")},
        jobs={
            "a": Step(
                name="a",
                command="python -c 'print(1)'\necho ${{inputs.d}}\n",
                component_name="comp_a",
                component_version="2.1",
                input_decls={"d": InputDecl(type="uri_folder")},
                inputs={"d": ParentInput("d")},
                has_code=True,
                timeout_s=90,
                max_retries=2,
                is_deterministic=False,
                environment={"image": "python:3.11"},
                environment_variables={"A": "1"},
            )
        },
    )
    assert [x for x in validate_pipeline(p) if x.severity == "error"] == []
    dump_folder(p, tmp_path)
    pipeline_yml = (tmp_path / "pipeline.yml").read_text()
    assert "limits:\n      timeout: 90" in pipeline_yml
    assert "retry_settings:\n      max_retries: 2" in pipeline_yml
    assert "is_deterministic: false" in (tmp_path / "components" / "a.yml").read_text()
    assert (tmp_path / "code" / "a").is_dir() and (tmp_path / "data" / "d").is_dir()
    assert load_pipeline(tmp_path / "pipeline.yml")[0] == p
    assert roundtrip_json(p) == p


def test_export_refuses_unsafe_names(tmp_path):
    with pytest.raises(ValueError):
        dump_folder(Pipeline(name="p", jobs={"../x": Step(name="../x", command="echo")}), tmp_path)
    with pytest.raises(ValueError):
        dump_folder(Pipeline(name="p", files={"code/../../x": b""}), tmp_path)


# -- generated DAGs --------------------------------------------------------------------------------

NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20).filter(
    lambda s: "${{" not in s
)
SEGMENT = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,8}", fullmatch=True).filter(lambda s: s != "__pycache__")
FILE_BYTES = st.binary(max_size=64)
VALUES = {
    "string": TEXT,
    "integer": st.integers(-(2**40), 2**40),
    "number": st.floats(allow_nan=False, allow_infinity=False, width=64),
    "boolean": st.booleans(),
}


def _no_file_dir_clash(files: dict[str, bytes]) -> bool:
    return not any(other.startswith(key + "/") for key in files for other in files)


FOLDER = st.dictionaries(st.lists(SEGMENT, min_size=1, max_size=3).map("/".join), FILE_BYTES, max_size=4).filter(
    _no_file_dir_clash
)


@st.composite
def data_files(draw, data_type: str, key: str) -> dict[str, bytes]:
    if data_type == "uri_file":
        return {f"{key}/{draw(SEGMENT)}": draw(FILE_BYTES)}
    return {f"{key}/{rel}": data for rel, data in draw(FOLDER).items()}


@st.composite
def input_decl(draw) -> InputDecl:
    type_ = draw(st.sampled_from(["string", "integer", "number", "boolean", "uri_file", "uri_folder"]))
    decl = InputDecl(type=type_, optional=draw(st.booleans()), description=draw(st.one_of(st.just(""), TEXT)))
    if type_ == "string" and draw(st.booleans()):
        decl.enum = draw(st.lists(TEXT, min_size=1, max_size=3, unique=True))
    if type_ in VALUES and draw(st.booleans()):
        decl.default = draw(st.sampled_from(decl.enum)) if decl.enum else draw(VALUES[type_])
    return decl


@st.composite
def pipelines(draw) -> Pipeline:
    files: dict[str, bytes] = {}
    p = Pipeline(
        name=draw(TEXT.filter(lambda s: s.strip())),
        display_name=draw(st.one_of(st.just(""), TEXT)),
        description=draw(st.one_of(st.just(""), TEXT)),
        settings=Settings(
            default_compute=draw(st.sampled_from(["", "azureml:cpu-cluster", "local"])),
            continue_on_step_failure=draw(st.booleans()),
            force_rerun=draw(st.booleans()),
        ),
    )
    for name in draw(st.lists(NAMES, max_size=3, unique=True)):
        decl = draw(input_decl())
        if decl.type in ("uri_file", "uri_folder"):
            if draw(st.booleans()):
                decl.data = DataPath(decl.type, f"data/{name}")
                files.update(draw(data_files(decl.type, decl.data.key)))
            else:
                decl.optional = True
        p.inputs[name] = decl

    step_names = draw(st.lists(NAMES, min_size=1, max_size=5, unique=True))
    for index, name in enumerate(step_names):
        step = Step(
            name=name,
            command="",
            display_name=draw(st.one_of(st.just(""), TEXT)),
            description=draw(st.one_of(st.just(""), TEXT)),
            component_name=draw(st.one_of(st.just(name), NAMES)),
            component_version=draw(st.sampled_from(["1", "2", "0.3.1"])),
            compute=draw(st.sampled_from(["", "azureml:cpu-cluster", "local"])),
            environment=draw(
                st.one_of(st.just(""), st.just("azureml:AzureML-sklearn-1.0@latest"), st.just({"image": "python:3.11"}))
            ),
            environment_variables=draw(st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,5}", fullmatch=True), TEXT)),
            timeout_s=draw(st.one_of(st.none(), st.integers(1, 10**6))),
            max_retries=draw(st.integers(0, 5)),
            is_deterministic=draw(st.booleans()),
        )
        for input_name in draw(st.lists(NAMES, max_size=4, unique=True)):
            decl = draw(input_decl())
            step.input_decls[input_name] = decl
            choices = ["literal"] if decl.type in VALUES else ["data"]
            upstream_outputs = [(j, o) for j in step_names[:index] for o in p.jobs[j].output_decls]
            if decl.type not in VALUES and upstream_outputs:
                choices.append("job")
            if any(d.type == decl.type and not d.enum for d in p.inputs.values()) and not decl.enum:
                choices.append("parent")
            if decl.optional or decl.default is not None:
                choices.append("unbound")
            choice = draw(st.sampled_from(choices))
            if choice == "literal":
                step.inputs[input_name] = draw(st.sampled_from(decl.enum)) if decl.enum else draw(VALUES[decl.type])
            elif choice == "data":
                key = f"data/{name}.{input_name}"
                step.inputs[input_name] = DataPath(decl.type, key)
                files.update(draw(data_files(decl.type, key)))
            elif choice == "job":
                step.inputs[input_name] = JobOutput(*draw(st.sampled_from(upstream_outputs)))
            elif choice == "parent":
                same = [n for n, d in p.inputs.items() if d.type == decl.type and not d.enum]
                step.inputs[input_name] = ParentInput(draw(st.sampled_from(same)))
        for output_name in draw(st.lists(NAMES, max_size=2, unique=True)):
            step.output_decls[output_name] = OutputDecl(
                type=draw(st.sampled_from(["uri_folder", "uri_file"])), description=draw(st.one_of(st.just(""), TEXT))
            )
            if draw(st.booleans()):
                parent_output = f"{name}_{output_name}"
                p.outputs[parent_output] = OutputDecl(type=step.output_decls[output_name].type)
                step.outputs[output_name] = ParentOutputRef(parent_output)
        parts = [draw(st.sampled_from(["python main.py", "echo 'a b'", "set -e\npython -c 'print(1)'\n"]))]
        for input_name, decl in step.input_decls.items():
            ref = f"--{input_name} ${{{{inputs.{input_name}}}}}"
            parts.append(f"$[[{ref}]]" if decl.optional else ref)
        parts += [f"--{o} ${{{{outputs.{o}}}}}" for o in step.output_decls]
        step.command = " ".join(parts)
        if draw(st.booleans()):
            step.has_code = True
            files.update({f"code/{name}/{rel}": data for rel, data in draw(FOLDER).items()})
        p.jobs[name] = step
    p.files = files
    return p


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(p=pipelines())
def test_generated_pipelines_round_trip(p, tmp_path_factory):
    assert [str(x) for x in validate_pipeline(p) if x.severity == "error"] == []
    assert roundtrip_json(p) == p
    dest = tmp_path_factory.mktemp("export")
    assert roundtrip_folder(p, dest) == p


@pytest.mark.parametrize(
    "value",
    ["\x85", "a\u2028b", "a\r\nb", " lead", "trail ", "yes", "null", "1.0", "#x", "'", '"', "- x", "a: b", "\t", "~"],
)
def test_awkward_strings_round_trip(value, tmp_path):
    p = Pipeline(
        name=f"p{value}",
        description=value,
        inputs={"s": InputDecl(type="string", default=value, description=value)},
        jobs={
            "a": Step(
                name="a",
                command=f"echo ${{{{inputs.s}}}} ${{{{inputs.t}}}} # {value}",
                component_name="a",
                component_version="1",
                input_decls={"s": InputDecl(type="string"), "t": InputDecl(type="string")},
                inputs={"s": ParentInput("s"), "t": value},
                environment_variables={"V": value},
            )
        },
    )
    assert roundtrip_folder(p, tmp_path) == p
    assert roundtrip_json(p) == p


def test_from_json_rejects_malformed_input():
    with pytest.raises(ValueError):
        from_json({})
    with pytest.raises(ValueError):
        from_json({"name": "p", "jobs": {"a": {"name": "a"}}})
    with pytest.raises(ValueError):
        from_json({"format": 99, "name": "p"})


def test_to_json_tags_bindings():
    p, _ = load_pipeline(EXAMPLES / "diamond" / "pipeline.yml")
    d = to_json(p)
    assert "files" not in d
    assert d["jobs"]["combine"]["inputs"] == {
        "squares": {"job": "square", "output": "result"},
        "doubles": {"job": "double", "output": "result"},
        "greeting": {"parent_input": "greeting"},
    }
    assert d["jobs"]["square"]["inputs"]["power"] == {"value": 2}
    assert d["jobs"]["combine"]["outputs"] == {"summary": {"parent_output": "summary"}}
