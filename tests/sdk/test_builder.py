"""The SDK builds the pipeline its YAML twin describes: same spec, same content hash (design.md, Python SDK)."""

from __future__ import annotations

import inspect
import os
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepwise.hashing import pipeline_content_hash
from stepwise.sdk import Input, Output, command, load_component, load_pipeline, pipeline
from stepwise.spec import Distribution, JobOutput, ParentInput, ParentOutputRef, SpecError, to_json
from stepwise.spec import load_pipeline as spec_load_pipeline

PREP_PY = b"import sys, pathlib\npathlib.Path(sys.argv[2]).mkdir(parents=True, exist_ok=True)\n"

TRAIN_YML = """\
type: command
name: train
inputs:
  data: {type: uri_folder}
  max_iter: {type: integer, default: 10}
outputs:
  model: {type: uri_folder}
code: ./src
command: python train.py --data ${{inputs.data}} --max_iter ${{inputs.max_iter}} --model ${{outputs.model}}
"""

TWIN_PIPELINE = """\
type: pipeline
name: digits
settings:
  default_compute: cpu-cluster
inputs:
  max_iter:
    type: integer
    default: 100
outputs:
  model:
    type: uri_folder
jobs:
  prep_data:
    type: command
    code: ./src
    command: python prep.py --out ${{outputs.data}}
    outputs:
      data:
        type: uri_folder
  train_model:
    type: command
    component: ./train.yml
    inputs:
      data: ${{parent.jobs.prep_data.outputs.data}}
      max_iter: ${{parent.inputs.max_iter}}
    outputs:
      model: ${{parent.outputs.model}}
"""


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "prep.py").write_bytes(PREP_PY)
    (tmp_path / "src" / "train.py").write_bytes(b"print('train')\n")
    (tmp_path / "train.yml").write_text(TRAIN_YML)
    monkeypatch.chdir(tmp_path)  # command(code="./src") reads relative to the working directory, as azure.ai.ml
    return tmp_path


def digits_pipeline():
    prep = command(
        name="prep",
        code="./src",
        command="python prep.py --out ${{outputs.data}}",
        outputs={"data": Output(type="uri_folder")},
    )
    train = load_component("train.yml")

    @pipeline(name="digits", default_compute="cpu-cluster")
    def digits(max_iter: int = 100):
        prep_data = prep()
        train_model = train(data=prep_data.outputs.data, max_iter=max_iter)
        return {"model": train_model.outputs.model}

    return digits


def test_design_example_builds_the_graph_with_variable_names(project):
    job = digits_pipeline()(max_iter=50)
    assert list(job.jobs) == ["prep_data", "train_model"]
    train = job.jobs["train_model"]
    assert train.inputs == {"data": JobOutput("prep_data", "data"), "max_iter": ParentInput("max_iter")}
    assert train.outputs == {"model": ParentOutputRef("model")}
    assert job.spec.edges() == [("prep_data", "data", "train_model", "data")]
    assert job.spec.inputs["max_iter"].default == 100  # the definition keeps its default...
    assert job.inputs == {"max_iter": 50}  # ...and the call's value is the run's input
    assert job.spec.files["code/prep_data/prep.py"] == PREP_PY
    assert job.spec.files["code/train_model/train.py"] == b"print('train')\n"


def test_design_example_and_its_yaml_twin_are_the_same_version(project):
    # `command()` makes an inline job, whose component the loader names after the job: not
    # `prep`, the name given to command(), which names the job only where it is not assigned.
    (project / "pipeline.yml").write_text(TWIN_PIPELINE)
    twin, _ = spec_load_pipeline(project / "pipeline.yml")
    job = digits_pipeline()()
    assert to_json(job.spec) == to_json(twin)
    assert job.content_hash() == pipeline_content_hash(twin)


def test_to_yaml_loads_back_to_the_same_version(project, tmp_path_factory):
    job = digits_pipeline()()
    out = tmp_path_factory.mktemp("export")
    path = job.to_yaml(out)
    assert path == out / "pipeline.yml"
    assert (out / "components" / "train_model.yml").is_file()
    assert load_pipeline(path).content_hash() == job.content_hash()
    # design.md's `to_yaml()` with no folder: the text of that pipeline.yml.
    assert job.to_yaml() == path.read_text()


def test_unassigned_steps_take_their_component_name_made_unique(project):
    echo = command(name="echo", command="echo ${{outputs.out}}", outputs={"out": Output()})

    @pipeline
    def fan():
        echo()
        echo()
        return {"last": echo().outputs.out}

    assert list(fan().jobs) == ["echo", "echo_2", "echo_3"]
    assert fan().name == "fan"


def test_wrong_input_name_and_invalid_spec_are_clear(project):
    echo = command(name="echo", command="echo ${{inputs.x}}", inputs={"x": 1})

    @pipeline
    def typo():
        echo(y=2)

    with pytest.raises(TypeError, match="no input 'y'"):
        typo()

    bad = command(name="bad", command="echo ${{inputs.missing}}")

    @pipeline
    def broken():
        bad()

    with pytest.raises(SpecError) as info:
        broken()
    assert any(p.job == "bad" and p.field == "command" for p in info.value.problems)


def test_component_outside_a_pipeline_says_where_to_call_it(project):
    echo = command(name="echo", command="echo hi")
    with pytest.raises(RuntimeError, match="inside a @pipeline"):
        echo()


# -- the round trip over generated pipelines -------------------------------------------------

names = st.sampled_from(["alpha", "beta", "gamma", "delta"])
literals = st.one_of(
    st.integers(min_value=-1000, max_value=1000),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).filter(lambda f: f != int(f)),
    st.booleans(),
    st.text(alphabet="abc xyz-_.", min_size=1, max_size=8).filter(lambda s: s.strip() == s and s[0].isalpha()),
)


@st.composite
def pipelines(draw):
    """A small DAG as plain data: steps with literal inputs, maybe an edge from an earlier step, maybe a parameter."""
    n = draw(st.integers(min_value=1, max_value=4))
    steps = []
    for i in range(n):
        inputs = draw(st.dictionaries(names, literals, max_size=2))
        upstream = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=i - 1))) if i else None
        param = draw(st.sampled_from(sorted(inputs))) if inputs and draw(st.booleans()) else None
        steps.append({"inputs": inputs, "upstream": upstream, "param": param, "compute": draw(st.booleans())})
    return {"steps": steps, "continue": draw(st.booleans())}


def _command(step: dict) -> str:
    parts = ["echo"] + [f"${{{{inputs.{k}}}}}" for k in step["inputs"]]
    if step["upstream"] is not None:
        parts.append("${{inputs.upstream}}")
    return " ".join(parts + ["${{outputs.out}}"])


def _sdk(desc: dict):
    comps = []
    for i, step in enumerate(desc["steps"]):
        inputs: dict = dict(step["inputs"])
        if step["upstream"] is not None:
            inputs["upstream"] = Input(type="uri_folder")
        comps.append(command(name=f"c{i}", command=_command(step), inputs=inputs, outputs={"out": Output()}))
    params = {f"p{i}": s["inputs"][s["param"]] for i, s in enumerate(desc["steps"]) if s["param"]}

    def body(**kwargs):
        nodes = []
        for i, step in enumerate(desc["steps"]):
            bind = {}
            if step["param"]:
                bind[step["param"]] = kwargs[f"p{i}"]
            if step["upstream"] is not None:
                bind["upstream"] = nodes[step["upstream"]].outputs.out
            nodes.append(comps[i](**bind))  # no local names the step: it is named after its component
            if step["compute"]:
                nodes[-1].compute = "gpu"
        return {"result": nodes[-1].outputs.out}

    body.__signature__ = inspect.Signature(
        [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in params.items()]
    )
    return pipeline(body, name="generated", continue_on_step_failure=desc["continue"])()


def _twin(desc: dict, folder: Path) -> Path:
    """The same pipeline written by hand as Azure ML YAML: one component file per step."""
    jobs, inputs = {}, {}
    for i, step in enumerate(desc["steps"]):
        comp_inputs = {k: {"type": _type(v), "default": v} for k, v in step["inputs"].items()}
        if step["upstream"] is not None:
            comp_inputs["upstream"] = {"type": "uri_folder"}
        comp = {"type": "command", "name": f"c{i}", "command": _command(step)}
        comp["outputs"] = {"out": {"type": "uri_folder"}}
        if comp_inputs:
            comp["inputs"] = comp_inputs
        (folder / f"c{i}.yml").write_text(yaml.safe_dump(comp, sort_keys=False))
        job: dict = {"type": "command", "component": f"./c{i}.yml"}
        bind = {}
        if step["param"]:
            inputs[f"p{i}"] = step["inputs"][step["param"]]
            bind[step["param"]] = f"${{{{parent.inputs.p{i}}}}}"
        if step["upstream"] is not None:
            bind["upstream"] = f"${{{{parent.jobs.c{step['upstream']}.outputs.out}}}}"
        if bind:
            job["inputs"] = bind
        if step["compute"]:
            job["compute"] = "gpu"
        jobs[f"c{i}"] = job
    last = f"c{len(desc['steps']) - 1}"
    jobs[last]["outputs"] = {"out": "${{parent.outputs.result}}"}
    doc: dict = {"type": "pipeline", "name": "generated"}
    if desc["continue"]:
        doc["settings"] = {"continue_on_step_failure": True}
    if inputs:
        doc["inputs"] = inputs
    doc["outputs"] = {"result": {"type": "uri_folder"}}
    doc["jobs"] = jobs
    (folder / "pipeline.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder / "pipeline.yml"


def _type(value: object) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string"}[type(value)]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(desc=pipelines())
def test_generated_pipelines_equal_their_yaml_twins(desc):
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        try:
            os.chdir(tmp)
            job = _sdk(desc)
            twin, _ = spec_load_pipeline(_twin(desc, Path(tmp)))
            (Path(tmp) / "export").mkdir()
            exported = load_pipeline(job.to_yaml(Path(tmp) / "export"))
        finally:
            os.chdir(cwd)
    assert to_json(job.spec) == to_json(twin)
    assert job.content_hash() == pipeline_content_hash(twin) == exported.content_hash()


def test_a_distributed_command_builds_what_its_yaml_twin_loads(tmp_path):
    train = command(
        name="train",
        command="python -c pass",
        distribution={"type": "pytorch", "process_count_per_instance": 2},
        instance_count=1,
    )

    @pipeline(name="dist")
    def dist():
        train()

    built = dist()
    assert built.spec.jobs["train"].distribution == Distribution(type="pytorch", processes=2)
    twin, _ = spec_load_pipeline(built.to_yaml(tmp_path))
    assert to_json(twin) == to_json(built.spec)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"instance_count": 2}, "multi-host steps are not supported yet"),
        ({"distribution": {"type": "ray"}}, "'ray' is not supported yet"),
        ({"distribution": {"type": "mpi", "process_count_per_instance": 0}}, "process_count_per_instance must be"),
    ],
)
def test_a_distribution_stepwise_cannot_run_is_refused_clearly(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        command(name="train", command="python -c pass", **kwargs)


def test_an_input_s_bounds_build_what_its_yaml_twin_loads(tmp_path):
    train = command(
        name="train",
        command="python -c pass --epochs ${{inputs.epochs}}",
        inputs={"epochs": Input(type="integer", min=1, max=10)},
    )

    @pipeline(name="bounded")
    def bounded(epochs: int = 3):
        train(epochs=epochs)

    built = bounded()
    decl = built.spec.jobs["train"].input_decls["epochs"]
    assert (decl.min, decl.max) == (1, 10)
    twin, _ = spec_load_pipeline(built.to_yaml(tmp_path))
    assert to_json(twin) == to_json(built.spec)

    @pipeline(name="out-of-bounds")
    def out_of_bounds():
        train(epochs=11)

    with pytest.raises(SpecError, match="above the maximum 10"):
        out_of_bounds()


# -- data given by reference: registered assets, datastore paths, web addresses ----------------

FIT = """\
type: command
name: fit
inputs:
  data: {type: uri_folder}
command: ls ${{inputs.data}}
"""


def _fit(type_: str = "uri_folder"):
    return command(name="fit", command="ls ${{inputs.data}}", inputs={"data": Input(type=type_)})


@pytest.mark.parametrize(
    ("type_", "ref"),
    [
        ("uri_folder", "azureml:digits:1"),
        ("uri_folder", "azureml:digits@latest"),
        ("uri_folder", "azureml://datastores/workspaceblobstore/paths/digits/"),
        ("uri_file", "https://example.com/digits.csv"),
    ],
)
def test_a_parameter_naming_data_by_reference_builds_what_its_yaml_twin_loads(tmp_path, type_, ref):
    fit = _fit(type_)
    registered = Input(type=type_, path=ref)

    @pipeline(name="by-ref")
    def by_ref(digits: Input = registered):
        fit(data=digits)

    twin_dir = tmp_path / "twin"
    twin_dir.mkdir()
    (twin_dir / "fit.yml").write_text(FIT.replace("uri_folder", type_))
    (twin_dir / "pipeline.yml").write_text(
        f"type: pipeline\nname: by-ref\ninputs:\n  digits: {{type: {type_}, path: '{ref}'}}\njobs:\n"
        "  fit:\n    type: command\n    component: ./fit.yml\n    inputs:\n      data: ${{parent.inputs.digits}}\n"
    )

    built = by_ref()
    loaded, _ = spec_load_pipeline(twin_dir / "pipeline.yml")
    assert built.spec.inputs["digits"].asset == ref
    assert built.spec.files == {}  # nothing read from the working directory
    assert to_json(built.spec) == to_json(loaded)
    assert built.content_hash() == pipeline_content_hash(loaded)
    assert f"path: {ref}" in built.to_yaml()
    assert load_pipeline(built.to_yaml(tmp_path / "export")).content_hash() == built.content_hash()


def test_a_step_given_a_data_asset_binds_a_pipeline_input_as_its_yaml_twin_does(tmp_path):
    fit = _fit()

    @pipeline(name="by-ref")
    def by_ref(fit_data: str = "taken"):  # the name the step's input would take: the loader numbers it
        fit(data=Input(type="uri_folder", path="azureml:digits@latest"))
        fit(data=Input(type="uri_folder", path="azureml:digits:2"))

    twin_dir = tmp_path / "twin"
    twin_dir.mkdir()
    (twin_dir / "pipeline.yml").write_text(
        "type: pipeline\nname: by-ref\ninputs:\n  fit_data: taken\njobs:\n"
        "  fit:\n    type: command\n    command: ls ${{inputs.data}}\n"
        "    inputs:\n      data: {type: uri_folder, path: 'azureml:digits@latest'}\n"
        "  fit_2:\n    type: command\n    command: ls ${{inputs.data}}\n"
        "    inputs:\n      data: {type: uri_folder, path: 'azureml:digits:2'}\n"
    )

    built = by_ref()
    loaded, _ = spec_load_pipeline(twin_dir / "pipeline.yml")
    assert built.jobs["fit"].inputs == {"data": ParentInput("fit_data_2")}
    assert built.jobs["fit_2"].inputs == {"data": ParentInput("fit_2_data")}
    assert built.spec.inputs["fit_data_2"].asset == "azureml:digits@latest"
    assert to_json(built.spec) == to_json(loaded)
    assert built.content_hash() == pipeline_content_hash(loaded)
    text = built.to_yaml()
    assert "path: azureml:digits@latest" in text and "path: azureml:digits:2" in text


@pytest.mark.parametrize("ref", ["azureml:digits", "azureml:digits:", "azureml:digits@newest", "azureml:-x:1"])
def test_a_malformed_data_asset_reference_is_named_in_a_clear_error(project, ref):
    fit = _fit()
    malformed = Input(type="uri_folder", path=ref)

    @pipeline(name="as-parameter")
    def as_parameter(digits: Input = malformed):
        fit(data=digits)

    @pipeline(name="as-step-input")
    def as_step_input():
        fit(data=Input(type="uri_folder", path=ref))

    with pytest.raises(ValueError, match=rf"parameter 'digits': data asset '{ref}' is not azureml:NAME:VERSION"):
        as_parameter()
    with pytest.raises(ValueError, match=rf"step 'fit' input 'data': data asset '{ref}' is not azureml:NAME"):
        as_step_input()


def test_a_remote_path_stepwise_cannot_read_is_refused_clearly(project):
    fit = _fit()

    @pipeline(name="s3")
    def s3():
        fit(data=Input(type="uri_folder", path="s3://bucket/digits/"))

    with pytest.raises(ValueError, match="step 'fit' input 'data': 's3://bucket/digits/' is not supported"):
        s3()
