"""Numbers in a pipeline YAML are bounded as the database and the run form bound them."""

from __future__ import annotations

import pytest

from stepwise.spec.bindings import INTEGER_MAX, INTEGER_MIN, MAX_RETRIES, MAX_TIMEOUT_S

from .helpers import errors_of, one

PIPELINE = """
type: pipeline
inputs:
  n: {{type: integer, default: {default}}}
jobs:
  a:
    type: command
    command: echo ${{{{inputs.n}}}}
    inputs:
      n: ${{{{parent.inputs.n}}}}
    limits: {{timeout: {timeout}}}
    retry_settings: {{max_retries: {retries}}}
"""


def yaml(default: object = 1, timeout: object = 60, retries: object = 0) -> str:
    return PIPELINE.format(default=default, timeout=timeout, retries=retries)


@pytest.mark.parametrize("default", [INTEGER_MAX + 1, INTEGER_MIN - 1, 10**30])
def test_an_integer_default_beyond_64_bits_is_an_error(default):
    problem = one(errors_of(yaml(default=default)), "expected an integer from")
    assert problem.field == "inputs.n.default"


@pytest.mark.parametrize("timeout", [MAX_TIMEOUT_S + 1, 10**30, 0])
def test_a_timeout_beyond_a_year_is_an_error(timeout):
    problem = one(errors_of(yaml(timeout=timeout)), "timeout must be a whole number of seconds from 1")
    assert (problem.job, problem.field) == ("a", "limits.timeout")


@pytest.mark.parametrize("retries", [MAX_RETRIES + 1, 10**30, -1])
def test_max_retries_beyond_the_limit_is_an_error(retries):
    problem = one(errors_of(yaml(retries=retries)), f"max_retries must be from 0 to {MAX_RETRIES}")
    assert (problem.job, problem.field) == ("a", "retry_settings.max_retries")
