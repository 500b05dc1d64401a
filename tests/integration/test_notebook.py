"""examples/notebooks/digits.ipynb, executed cell by cell with nbclient against a served app and a real worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines_ui.api.tokens import token_create
from pipelines_ui.models import Role, Team
from tests.browser.conftest import serve_app
from tests.conftest import make_user

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "examples" / "notebooks"


@pytest.mark.isolation("none")  # the steps import numpy and scikit-learn from the worker's environment
def test_digits_notebook_runs_every_cell(workers, tmp_path, monkeypatch):
    workers.extra_env.update(STEPWISE_ARTIFACTS=str(tmp_path / "artifacts"), STEPWISE_WORKDIR=str(tmp_path / "work"))
    workers.start()
    team = Team.objects.create(name="Notebooks")
    user = make_user("nb", team, Role.EDITOR)
    token = token_create(user=user, name="notebook", scopes=["read", "run", "write"]).secret
    with serve_app(tmp_path) as base:
        monkeypatch.setenv("STEPWISE_URL", base)
        monkeypatch.setenv("STEPWISE_TOKEN", token)
        monkeypatch.setenv("STEPWISE_TEAM", team.name)
        monkeypatch.setenv("PYTHONPATH", str(ROOT))
        notebook = nbformat.read(NOTEBOOKS / "digits.ipynb", as_version=4)
        client = nbclient.NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
        )
        client.execute()  # raises CellExecutionError naming the cell that failed

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    text = "\n".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "['prep_data', 'train_model']" in text
    assert "reused from run #" in text
    assert "epoch 15: accuracy" in text
    assert "'model.pkl'" in text
    charts = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(charts) == 2  # the first run's accuracy, then both runs overlaid
