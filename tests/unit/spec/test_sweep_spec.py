"""`type: sweep` jobs read, checked and written back: errors name the job, field and line."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from stepwise.spec import load_pipeline, parse_text
from stepwise.spec.sweep import Distribution, EarlyTermination, Objective, Sampling, SweepLimits

from .helpers import errors_of, one
from .test_roundtrip import roundtrip_folder, roundtrip_json

CORPUS = Path(__file__).resolve().parents[2] / "azureml_corpus" / "sweep"

SWEEP = """\
type: pipeline
jobs:
  tune:
    type: sweep
    trial:
      command: python -c "print(${{inputs.lr}}, ${{inputs.depth}}, '${{inputs.kind}}')"
      inputs:
        lr: {type: number}
        depth: {type: integer}
        kind: {type: string}
    sampling_algorithm: {type: random, seed: 3}
    search_space:
      lr: {type: uniform, min_value: 0.01, max_value: 0.1}
      depth: {type: randint, upper: 8}
      kind: {type: choice, values: [a, b]}
    objective: {primary_metric: accuracy, goal: maximize}
    limits: {max_total_trials: 6, max_concurrent_trials: 2, timeout: 300, trial_timeout: 60}
    early_termination: {type: median_stopping, evaluation_interval: 2, delay_evaluation: 1}
"""


def with_lines(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


def test_an_inline_trial_sweep_loads_with_every_setting():
    p, warnings = parse_text(SWEEP)
    assert not [w for w in warnings if w.severity == "error"]
    step = p.jobs["tune"]
    assert step.command.startswith("python -c") and set(step.input_decls) == {"lr", "depth", "kind"}
    sweep = step.sweep
    assert sweep is not None
    assert sweep.search_space["depth"] == Distribution("randint", params={"upper": 8})
    assert sweep.search_space["kind"] == Distribution("choice", values=["a", "b"])
    assert sweep.sampling == Sampling("random", seed=3)
    assert sweep.objective == Objective("accuracy", "maximize")
    assert sweep.limits == SweepLimits(max_total_trials=6, max_concurrent_trials=2, timeout_s=300, trial_timeout_s=60)
    assert sweep.early_termination == EarlyTermination("median_stopping", evaluation_interval=2, delay_evaluation=1)
    # The sweep's limits are its own, not a command step's timeout.
    assert step.timeout_s is None


def test_the_corpus_sample_loads_and_round_trips(tmp_path):
    folder = tmp_path / "sweep"
    shutil.copytree(CORPUS, folder)
    p, _ = load_pipeline(folder / "pipeline.yml")
    step = p.jobs["sweep_step"]
    assert step.sweep is not None and step.component_name == "toy_train"
    assert step.inputs == {"epochs": 3}
    assert roundtrip_json(p) == p
    assert roundtrip_folder(p, tmp_path / "export") == p


def test_max_concurrent_trials_defaults_to_at_most_four():
    p, _ = parse_text(with_lines(SWEEP, "max_concurrent_trials: 2, ", ""))
    assert p.jobs["tune"].sweep.limits.max_concurrent_trials == 4
    p, _ = parse_text(with_lines(SWEEP, "max_total_trials: 6, max_concurrent_trials: 2, ", "max_total_trials: 2, "))
    assert p.jobs["tune"].sweep.limits.max_concurrent_trials == 2


def test_an_unknown_distribution_is_named_with_its_field_and_line():
    problem = one(errors_of(with_lines(SWEEP, "type: randint, upper: 8", "type: banana")), "unknown distribution")
    assert "'banana'" in problem.message and "randint" in problem.message
    assert problem.job == "tune" and problem.field == "search_space.depth.type" and problem.line == 14


def test_bayesian_sampling_takes_choice_uniform_and_quniform_without_early_termination():
    text = with_lines(SWEEP, "{type: random, seed: 3}", "bayesian")
    text = with_lines(
        text, "depth: {type: randint, upper: 8}", "depth: {type: quniform, min_value: 1, max_value: 8, q: 1}"
    )
    assert one(errors_of(text), "takes no early_termination").field == "early_termination"
    text = with_lines(
        text, "    early_termination: {type: median_stopping, evaluation_interval: 2, delay_evaluation: 1}\n", ""
    )
    p, warnings = parse_text(text)
    assert not [w for w in warnings if w.severity == "error"]
    assert p.jobs["tune"].sweep.sampling == Sampling("bayesian")


def test_a_missing_objective_is_a_clear_error():
    text = with_lines(SWEEP, "    objective: {primary_metric: accuracy, goal: maximize}\n", "")
    problem = one(errors_of(text), "needs an objective")
    assert problem.job == "tune" and problem.field == "objective"


@pytest.mark.parametrize(
    ("old", "new", "needle", "field"),
    [
        ("primary_metric: accuracy, ", "", "primary_metric is required", "objective.primary_metric"),
        ("goal: maximize", "goal: up", "goal must be maximize or minimize", "objective.goal"),
        (
            "{type: random, seed: 3}",
            "bayesian",
            "bayesian sampling takes only choice, uniform, quniform distributions",
            "search_space.depth.type",
        ),
        ("{type: random, seed: 3}", "sobol", "unknown sampling_algorithm", "sampling_algorithm"),
        ("seed: 3", "seed: x", "seed must be a whole number", "sampling_algorithm.seed"),
        ("min_value: 0.01, max_value: 0.1", "min_value: 0.01", "uniform needs max_value", "search_space.lr"),
        ("min_value: 0.01", "min_value: 1.0", "min_value is greater than max_value", "search_space.lr.min_value"),
        ("upper: 8", "upper: 0", "upper must be a whole number of at least 1", "search_space.depth.upper"),
        ("values: [a, b]", "values: []", "values must be a non-empty list", "search_space.kind.values"),
        (
            "max_total_trials: 6",
            "max_total_trials: 0",
            "max_total_trials must be a whole number",
            "limits.max_total_trials",
        ),
        ("max_concurrent_trials: 2", "max_concurrent_trials: 99", "from 1 to 16", "limits.max_concurrent_trials"),
        ("trial_timeout: 60", "trial_timeout: soon", "trial_timeout must be a whole number", "limits.trial_timeout"),
        ("type: median_stopping", "type: patience", "unknown early_termination type", "early_termination.type"),
    ],
)
def test_bad_sweep_settings_name_the_field(old, new, needle, field):
    problem = one(errors_of(with_lines(SWEEP, old, new)), needle)
    assert problem.job == "tune" and problem.field == field


def test_policies_need_their_own_settings():
    bandit = with_lines(SWEEP, "type: median_stopping, evaluation_interval: 2", "type: bandit, evaluation_interval: 2")
    one(errors_of(bandit), "needs one of slack_factor or slack_amount")
    truncation = with_lines(SWEEP, "type: median_stopping", "type: truncation_selection")
    one(errors_of(truncation), "needs truncation_percentage")


def test_grid_takes_only_choices():
    problems = errors_of(with_lines(SWEEP, "{type: random, seed: 3}", "grid"))
    fields = {p.field for p in problems if "grid sampling takes only choice" in p.message}
    assert fields == {"search_space.lr.type", "search_space.depth.type"}


def test_the_search_space_must_name_the_trials_literal_inputs():
    unknown = with_lines(SWEEP, "kind: {type: choice", "flavour: {type: choice")
    problem = one(errors_of(unknown), "the trial has no input 'flavour'")
    assert problem.field == "search_space.flavour" and problem.line == 15
    # `kind` is now neither searched nor bound.
    one(errors_of(unknown), "required input 'kind' is not bound")
    mistyped = with_lines(
        SWEEP, "depth: {type: randint, upper: 8}", "depth: {type: uniform, min_value: 1, max_value: 9}"
    )
    one(errors_of(mistyped), "a uniform distribution does not give integer values for 'depth'")
    both = with_lines(SWEEP, "    sampling_algorithm:", "    inputs: {kind: a}\n    sampling_algorithm:")
    one(errors_of(both), "both bound in inputs and searched")


def test_a_sweep_needs_a_trial_and_a_search_space():
    no_trial = textwrap.dedent(
        """\
        type: pipeline
        jobs:
          tune:
            type: sweep
            search_space: {x: {type: choice, values: [1]}}
            objective: {primary_metric: m, goal: minimize}
        """
    )
    one(errors_of(no_trial), "needs a 'trial'")
    no_space = with_lines(SWEEP, "    search_space:\n", "    unused:\n")
    one(errors_of(no_space), "needs a search_space")


def test_export_keeps_the_sweeps_limits_even_with_a_command_timeout_set(tmp_path):
    p, _ = parse_text(SWEEP)
    p.jobs["tune"].timeout_s = 30  # as the browser editor could set it
    again = roundtrip_folder(p, tmp_path / "export")
    assert again.jobs["tune"].sweep.limits == p.jobs["tune"].sweep.limits
    assert again.jobs["tune"].timeout_s is None
