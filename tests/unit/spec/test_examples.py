"""The examples run locally as the executor will run them: shell commands, local paths."""

from __future__ import annotations

import json
import re

import pytest

from stepwise.spec import load_pipeline

from .helpers import EXAMPLES, run_locally


def test_hello_runs(tmp_path):
    p, _ = load_pipeline(EXAMPLES / "hello" / "pipeline.yml")
    results = run_locally(p, tmp_path)
    assert results["shout"].stdout.strip() == "HELLO, WORLD"


def test_diamond_runs(tmp_path):
    p, _ = load_pipeline(EXAMPLES / "diamond" / "pipeline.yml")
    assert p.upstream() == {
        "make_numbers": set(),
        "square": {"make_numbers"},
        "double": {"make_numbers"},
        "combine": {"square", "double"},
    }
    results = run_locally(p, tmp_path)
    assert results["combine"].stdout.strip() == "hello! squares sum to 55, doubles to 30"
    summary = json.loads((tmp_path / "outputs" / "combine" / "summary" / "summary.json").read_text())
    assert summary["sum_of_squares"] == 55


def test_sklearn_iris_runs(tmp_path):
    pytest.importorskip("sklearn")
    p, _ = load_pipeline(EXAMPLES / "sklearn-iris" / "pipeline.yml", known_computes={"cpu-cluster"})
    results = run_locally(p, tmp_path)
    assert re.fullmatch(r"accuracy: 0\.9\d\d", results["evaluate"].stdout.strip())
    assert "--max_depth 3" in results["train"].args[2]


def test_sklearn_iris_optional_segment_dropped_without_max_depth(tmp_path):
    pytest.importorskip("sklearn")
    p, _ = load_pipeline(EXAMPLES / "sklearn-iris" / "pipeline.yml")
    del p.jobs["train"].inputs["max_depth"]
    results = run_locally(p, tmp_path)
    assert "--max_depth" not in results["train"].args[2]
    assert re.fullmatch(r"accuracy: 0\.9\d\d", results["evaluate"].stdout.strip())
