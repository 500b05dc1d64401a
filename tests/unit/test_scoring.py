"""The scorer's reading of request rows (stepwise/scoring.py): every bad cell is named."""

from __future__ import annotations

import pytest

from stepwise.scoring import ScoringInputError, parse_rows


def test_rows_follow_the_models_column_order():
    body = {"rows": [{"b": 2, "a": 1}, {"a": 3.5, "b": 4}]}
    assert parse_rows(body, columns=["a", "b"], n_features=2) == [[1.0, 2.0], [3.5, 4.0]]
    # Without names from the model, the first row's order holds for every row.
    assert parse_rows(body, columns=None, n_features=None) == [[2.0, 1.0], [4.0, 3.5]]


def test_inputs_are_lists_of_numbers():
    assert parse_rows({"inputs": [[1, 2], [3, 4]]}, columns=None, n_features=2) == [[1.0, 2.0], [3.0, 4.0]]


@pytest.mark.parametrize(
    "body, field, message",
    [
        ({"rows": [{"a": 1, "b": 2}, {"a": 1}]}, "rows[1].b", "missing column"),
        ({"rows": [{"a": 1, "b": 2, "c": 3}]}, "rows[0].c", "unknown column"),
        ({"rows": [{"a": "<script>", "b": 2}]}, "rows[0].a", "expected a number"),
        ({"rows": [{"a": True, "b": 2}]}, "rows[0].a", "expected a number"),
        ({"rows": [{"a": float("nan"), "b": 2}]}, "rows[0].a", "finite"),
        ({"rows": [[1, 2]]}, "rows[0]", "object of column"),
        ({"rows": []}, "rows", "non-empty"),
        ({"inputs": [[1, 2, 3]]}, "inputs[0]", "expected 2 values, got 3"),
        ({"inputs": [[1, None]]}, "inputs[0][1]", "expected a number"),
        ({"rows": [], "inputs": []}, "body", "send"),
        ([1, 2], "body", "send"),
    ],
)
def test_bad_input_names_the_row_and_column(body, field, message):
    with pytest.raises(ScoringInputError) as refused:
        parse_rows(body, columns=["a", "b"], n_features=2)
    assert refused.value.field == field and message in refused.value.message
