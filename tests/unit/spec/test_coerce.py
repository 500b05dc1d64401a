from __future__ import annotations

import re

import pytest

from stepwise.spec.bindings import INTEGER_MAX, coerce_literal


@pytest.mark.parametrize(
    ("type_", "raw", "value"),
    [
        ("integer", " 42 ", 42),
        ("number", "0.5", 0.5),
        ("boolean", "Yes", True),
        ("boolean", "0", False),
        ("string", " kept as typed ", " kept as typed "),
        ("integer", 7, 7),  # JSON values of the input's type pass through
        ("number", 3, 3),
        ("string", 5, "5"),  # read as Azure ML reads a typed value for the input's type
        ("integer", 3.0, 3),
        ("boolean", False, False),
        ("string", None, None),
    ],
)
def test_text_becomes_the_inputs_type(type_, raw, value):
    assert coerce_literal(type_, raw) == value


@pytest.mark.parametrize(
    ("type_", "raw", "message"),
    [
        ("integer", "three", "'three' is not a whole number"),
        ("number", "fast", "'fast' is not a number"),
        ("boolean", "maybe", "'maybe' is not a boolean (use true or false)"),
        ("integer", str(INTEGER_MAX + 1), "expected an integer from"),
        ("number", "inf", "expected a finite number"),
        ("string", "a\x00b", "holds a NUL character"),
        ("string", "a\ud800b", "holds an unpaired surrogate"),
        # Typed values (JSON from the API) are checked as typed values.
        ("integer", [1], "expected an integer, got [1]"),
        ("integer", 2**70, "expected an integer from"),
        ("integer", 2.5, "expected an integer"),
        ("number", float("inf"), "expected a finite number"),
        ("number", True, "expected a number"),
        ("string", {"a": 1}, "expected a string"),
        ("boolean", "yes please", "is not a boolean"),
    ],
)
def test_bad_text_is_named(type_, raw, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        coerce_literal(type_, raw)


def test_enum_and_secret_messages_never_surprise():
    assert coerce_literal("string", "adam", enum=["adam", "sgd"]) == "adam"
    with pytest.raises(ValueError, match="'rms' is not one of adam, sgd"):
        coerce_literal("string", "rms", enum=["adam", "sgd"])
    with pytest.raises(ValueError, match="a secret cannot be empty"):
        coerce_literal("secret", "")
