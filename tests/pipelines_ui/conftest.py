from __future__ import annotations

import pytest

from pipelines_ui.models import Pipeline
from runs.models import ComputeTarget
from stepwise.spec.model import InputDecl, JobOutput, OutputDecl, ParentInput, Step
from stepwise.spec.model import Pipeline as PipelineSpec
from tests.conftest import make_user


@pytest.fixture(autouse=True)
def _svg_cache(settings, tmp_path):
    """Each test gets its own on-disk SVG cache."""
    settings.VAR_DIR = tmp_path / "var"


@pytest.fixture
def compute(db) -> ComputeTarget:
    target, _ = ComputeTarget.objects.get_or_create(
        name="local", defaults={"aliases": ["cpu-cluster"], "queue": "local", "is_default": True}
    )
    return target


def make_spec(name: str = "demo", *, steps: int = 2) -> PipelineSpec:
    """prep -> train (steps=2), with a pipeline input and code files."""
    spec = PipelineSpec(name=name, display_name=name, inputs={"epochs": InputDecl(type="integer", default=3)})
    spec.jobs["prep"] = Step(
        name="prep",
        command="python prep.py --out ${{outputs.data}}",
        output_decls={"data": OutputDecl(type="uri_folder")},
        has_code=True,
        compute="local",
    )
    spec.files["code/prep/prep.py"] = b"print('prep')\n"
    if steps >= 2:
        spec.jobs["train"] = Step(
            name="train",
            display_name="Train model",
            command="python train.py --data ${{inputs.data}} --epochs ${{inputs.epochs}} --model ${{outputs.model}}",
            input_decls={"data": InputDecl(type="uri_folder"), "epochs": InputDecl(type="integer")},
            inputs={"data": JobOutput(job="prep", output="data"), "epochs": ParentInput(name="epochs")},
            output_decls={"model": OutputDecl(type="uri_folder")},
            has_code=True,
        )
        spec.files["code/train/train.py"] = b"print('train')\n"
    return spec


@pytest.fixture
def pipeline(db, team, alice, compute) -> Pipeline:
    from pipelines_ui import services

    return services.pipeline_create(team=team, name="demo", user=alice, spec=make_spec())


@pytest.fixture
def viewer(team):
    return make_user("victor", team, "viewer")
