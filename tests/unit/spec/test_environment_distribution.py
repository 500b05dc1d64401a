"""`environment` with a conda file, and `distribution` / `resources`, as the loader reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepwise.spec import Distribution, SpecError, from_json, load_pipeline, parse_text, to_json
from stepwise.spec.environment import conda_env, conda_to_pip, environment_keys

from .helpers import errors_of, one
from .test_roundtrip import roundtrip_folder

CORPUS = Path(__file__).resolve().parents[2] / "azureml_corpus"

JOB = """\
type: pipeline
jobs:
  a:
    type: command
    command: echo hi
{extra}
"""


def job(extra: str) -> str:
    return JOB.format(extra="\n".join("    " + line for line in extra.strip("\n").splitlines()))


def test_the_conda_sample_inlines_its_conda_file_and_warns_about_pip_only():
    p, warnings = load_pipeline(CORPUS / "conda_environment" / "pipeline.yml")
    conda = p.jobs["from_component"].environment["conda_file"]
    assert conda_env(conda).pip == ["pyyaml>=6"]
    assert conda_env(conda).python == "=3.11"
    assert conda_env(p.jobs["inline_environment"].environment["conda_file"]).pip == ["pyyaml>=6"]
    assert "pip=23.3" in one(warnings, "pip=23.3").message
    assert not [w for w in warnings if "image is not pulled" in w.message]


def test_the_conda_sample_round_trips(tmp_path):
    p, _ = load_pipeline(CORPUS / "conda_environment" / "pipeline.yml")
    assert roundtrip_folder(p, tmp_path / "export") == p


def test_conda_packages_are_installed_from_pypi_and_the_systems_libraries_left_to_the_host():
    _pipeline, warnings = parse_text(
        job("""
environment:
  conda_file:
    dependencies: [python=3.11, numpy=1.26, "conda-forge::scikit-learn", pytorch=2.1, cudatoolkit=11.8, pip,
                   {pip: [requests]}]
""")
    )
    pypi = one(warnings, "installed from PyPI")
    assert "numpy=1.26 as numpy==1.26.*" in pypi.message and "pytorch=2.1 as torch==2.1.*" in pypi.message
    assert "conda-forge::scikit-learn as scikit-learn" in pypi.message
    assert pypi.job == "a" and pypi.field == "environment.conda_file"
    one(warnings, "cudatoolkit=11.8: not installed")


@pytest.mark.parametrize(
    ("spec", "requirement"),
    [
        ("numpy", "numpy"),
        ("numpy=1.26", "numpy==1.26.*"),  # conda's fuzzy match: any 1.26.x
        ("numpy 1.26.*", "numpy==1.26.*"),
        ("numpy=1.26.4=py310h_0", "numpy==1.26.4"),  # a build string pins the version
        ("numpy==1.26.4", "numpy==1.26.4"),
        ("numpy >=1.20,<2", "numpy>=1.20,<2"),
        ("conda-forge::scikit-learn=1.3", "scikit-learn==1.3.*"),
        ("py-xgboost=2.0", "xgboost==2.0.*"),
        ("numpy=1.2|1.3", None),
        ("numpy=", None),
    ],
)
def test_a_conda_spec_reads_as_the_pip_requirement_it_means(spec, requirement):
    assert conda_to_pip(spec) == requirement


def test_a_conda_spec_that_reads_as_no_pip_requirement_is_an_error_naming_it():
    problem = one(
        errors_of(job("environment: {conda_file: {dependencies: [python=3.11, numpy=1.2|1.3, pandas]}}")),
        "read as no pip requirement",
    )
    assert "numpy=1.2|1.3" in problem.message and "pandas" not in problem.message


def test_a_malformed_pip_list_is_an_error():
    one(errors_of(job("environment: {conda_file: {dependencies: [{pip: {a: b}}]}}")), "'pip:' must be a list")


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("-r /etc/shadow", "pip option '-r' is not supported"),
        ("--editable .", "pip option '--editable' is not supported"),
        ("--extra-index-url https://x.example/${PIP_INDEX_URL}", "variables"),
        ("numpy\\n-r /etc/shadow", "must be one line"),
        ("--index-url", "needs a value"),
    ],
)
def test_pip_lines_that_would_reach_beyond_packages_are_errors(line, needle):
    text = job(f'environment: {{conda_file: {{dependencies: [{{pip: ["{line}"]}}]}}}}')
    assert one(errors_of(text), needle).field == "environment.conda_file"


def test_an_image_only_environment_is_a_warning():
    _, warnings = parse_text(job("environment: {image: 'python:3.11-slim'}"))
    problem = one(warnings, "image is not pulled")
    assert problem.job == "a" and problem.field == "environment.image"


def test_the_distributed_sample_reads_processes():
    p, _ = load_pipeline(CORPUS / "distributed_pytorch" / "pipeline.yml")
    assert p.jobs["train"].distribution == Distribution(type="pytorch", processes=2)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("distribution: {type: pytorch, process_count_per_instance: 4}", Distribution("pytorch", 4)),
        ("distribution: {type: mpi, process_count_per_instance: 3}", Distribution("mpi", 3)),
        ("distribution: {type: tensorflow, worker_count: 2, parameter_server_count: 0}", Distribution("tensorflow", 2)),
        ("distribution: {type: pytorch}", Distribution("pytorch", 1)),
    ],
)
def test_distributions_round_trip_through_json_and_yaml(extra, expected, tmp_path):
    p, _ = parse_text(job(extra))
    assert p.jobs["a"].distribution == expected
    assert from_json(to_json(p)).jobs["a"].distribution == expected
    assert roundtrip_folder(p, tmp_path / "export").jobs["a"].distribution == expected


def test_several_hosts_are_refused_at_validation():
    problem = one(errors_of(job("resources: {instance_count: 2}")), "multi-host steps are not supported yet")
    assert problem.job == "a" and problem.field == "resources.instance_count" and problem.line == 6


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("distribution: {type: ray}", "'ray' is not supported yet"),
        ("distribution: {type: horovod}", "'horovod' is unknown"),
        ("distribution: {type: pytorch, process_count_per_instance: 0}", "process_count_per_instance must be"),
        ("distribution: {type: tensorflow, worker_count: two}", "worker_count must be"),
        ("distribution: {type: tensorflow, parameter_server_count: 1}", "parameter servers are not supported"),
        ("resources: {instance_count: 0}", "instance_count must be"),
    ],
)
def test_bad_distributions_are_errors(extra, needle):
    assert one(errors_of(job(extra)), needle).job == "a"


def test_a_jobs_distribution_overrides_its_components(tmp_path):
    (tmp_path / "c.yml").write_text(
        "type: command\nname: c\ncommand: echo\ndistribution: {type: mpi, process_count_per_instance: 2}\n"
    )
    (tmp_path / "pipeline.yml").write_text(
        "type: pipeline\njobs:\n  a: {component: ./c.yml}\n"
        "  b: {component: ./c.yml, distribution: {type: pytorch, process_count_per_instance: 3}}\n"
    )
    p, _ = load_pipeline(tmp_path / "pipeline.yml")
    assert p.jobs["a"].distribution == Distribution("mpi", 2)
    assert p.jobs["b"].distribution == Distribution("pytorch", 3)


def test_a_jobs_resources_override_its_components_so_only_the_jobs_instance_count_is_checked(tmp_path):
    (tmp_path / "c.yml").write_text(
        "type: command\nname: c\ncommand: echo\nresources: {instance_count: 4, instance_type: big}\n"
    )
    (tmp_path / "pipeline.yml").write_text(
        "type: pipeline\njobs:\n"
        "  one_host: {component: ./c.yml, resources: {instance_count: 1, instance_type: small}}\n"
        "  two_hosts: {component: ./c.yml, resources: {instance_count: 2}}\n"
    )
    with pytest.raises(SpecError) as raised:
        load_pipeline(tmp_path / "pipeline.yml")
    multi = [p for p in raised.value.problems if "multi-host" in p.message]
    # The component's 4 is overridden by both jobs; only the job asking for 2 hosts is refused, once.
    assert [(p.job, Path(p.file).name, p.message.split(":")[0]) for p in multi] == [
        ("two_hosts", "pipeline.yml", "instance_count 2")
    ]


@pytest.mark.parametrize(
    ("reference", "keys"),
    [
        ("azureml:sklearn-1.5:3", ["sklearn-1.5:3", "sklearn-1.5"]),
        ("azureml:sklearn-1.5@latest", ["sklearn-1.5"]),
        ("sklearn-1.5", ["sklearn-1.5"]),
        ("azureml://registries/azureml/environments/sklearn-1.5/labels/latest", ["sklearn-1.5"]),
        ("azureml://registries/azureml/environments/sklearn-1.5/versions/7", ["sklearn-1.5:7", "sklearn-1.5"]),
        ("AzureML-sklearn-1.0-ubuntu20.04-py38-cpu", ["AzureML-sklearn-1.0-ubuntu20.04-py38-cpu"]),
        ("not a name", []),
        ("azureml://datastores/x/paths/y", []),
    ],
)
def test_the_names_a_compute_target_may_define_an_environment_under(reference, keys):
    assert environment_keys(reference) == keys
