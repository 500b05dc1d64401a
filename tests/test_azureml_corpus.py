"""Every case of tests/azureml_corpus: Azure ML pipelines as written for the cloud.

Each folder holding a `pipeline.yml` is a case; its `corpus.yml` (README.md there) says what
to expect. Here each case is validated with `pipelines validate`, imported, exported and
imported back (equal); tests/integration/test_azureml_corpus_runs.py runs the runnable ones.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

from pipelines_ui.components import component_register_file
from pipelines_ui.models import Pipeline, Team, Visibility
from pipelines_ui.services import pipeline_import, version_spec_with_files
from runs.models import ComputeTarget
from stepwise.spec import SpecError, dump_folder

CORPUS = Path(__file__).resolve().parent / "azureml_corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "pipeline.yml").is_file())
EXIT_OK, EXIT_INVALID = 0, 2


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    about: str = ""
    expect: str = "valid"
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)
    run: bool = False
    logs: dict[str, list[str]] = field(default_factory=dict)
    # Component files (relative to the case) registered, visible to every team, before the case is
    # validated: what its `component: azureml:NAME:VERSION` jobs use.
    register: list[str] = field(default_factory=list)


def load_case(name: str) -> Case:
    """The case in folder `name`; a corpus.yml with an unknown key or value fails loudly."""
    folder = CORPUS / name
    meta_file = folder / "corpus.yml"
    meta = yaml.safe_load(meta_file.read_text()) if meta_file.is_file() else {}
    known = set(Case.__dataclass_fields__) - {"name", "path"}
    if unknown := set(meta or {}) - known:
        raise ValueError(f"{meta_file}: unknown keys {sorted(unknown)} (use {sorted(known)})")
    case = Case(name=name, path=folder / "pipeline.yml", **(meta or {}))
    if case.expect not in ("valid", "invalid"):
        raise ValueError(f"{meta_file}: expect is valid or invalid, not {case.expect!r}")
    if case.expect == "invalid" and (case.run or not case.errors):
        raise ValueError(f"{meta_file}: an invalid case lists its errors and does not run")
    return case


def apply_settings(case: Case, settings) -> None:
    for key, value in case.settings.items():
        setattr(settings, key, value)


def register_components(case: Case) -> None:
    if not case.register:
        return
    owner, _ = Team.objects.get_or_create(name="corpus components")
    for rel in case.register:
        path = case.path.parent / rel
        component_register_file(team=owner, path=path, user=None, visibility=Visibility.INSTANCE, root=case.path.parent)


def ensure_default_target() -> None:
    """The target `make run` creates, answering to the Azure ML examples' `cpu-cluster`."""
    if not ComputeTarget.objects.filter(is_default=True).exists():
        ComputeTarget.objects.create(name="local", aliases=["cpu-cluster"], queue="stepwise-local", is_default=True)


def validate(path: Path) -> tuple[int, list[str], list[str]]:
    """`pipelines validate PATH` in process: (exit code, error lines, warning lines)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("pipelines", "validate", str(path), stdout=out, stderr=err)
    lines = err.getvalue().splitlines()
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    warnings = [line.removeprefix("warning: ") for line in lines if line.startswith("warning: ")]
    return exited.value.code, errors, warnings


@pytest.fixture(params=CASES)
def case(request, settings, db) -> Case:
    loaded = load_case(request.param)
    apply_settings(loaded, settings)
    ensure_default_target()
    register_components(loaded)
    return loaded


def test_the_corpus_has_cases_and_each_declares_sensibly():
    assert CASES
    for name in CASES:
        load_case(name)


def test_validate_says_what_the_case_expects(case):
    code, errors, warnings = validate(case.path)
    if case.expect == "valid":
        assert (code, errors) == (EXIT_OK, []), errors
    else:
        assert code == EXIT_INVALID
        # Only the root errors: nothing follows from them.
        assert len(errors) == len(case.errors), errors
        for expected in case.errors:
            assert len([e for e in errors if expected in e]) == 1, (expected, errors)
    for expected in case.warnings:
        assert any(expected in w for w in warnings), (expected, warnings)


def test_import_export_and_import_again_give_the_same_pipeline(case, alice, team, tmp_path):
    if case.expect == "invalid":
        with pytest.raises(SpecError):
            pipeline_import(team=team, path=case.path, user=alice, name=case.name)
        assert not Pipeline.objects.exists()
        return
    imported = version_spec_with_files(pipeline_import(team=team, path=case.path, user=alice, name=case.name))
    dump_folder(imported, tmp_path / "export")
    again = pipeline_import(team=team, path=tmp_path / "export" / "pipeline.yml", user=alice, name=f"{case.name}-2")
    assert version_spec_with_files(again) == imported
