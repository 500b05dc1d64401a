from __future__ import annotations

from stepwise.dag import blocked_steps, dom_id, downstream_closure, node_ids, ready_steps, run_outcome
from stepwise.spec.model import Pipeline, Step
from stepwise.states import RunState, StepState

DIAMOND = {"a": set(), "b": {"a"}, "c": {"a"}, "d": {"b", "c"}}
P, Q, R, S, F, U, K, C = (
    StepState.PENDING,
    StepState.QUEUED,
    StepState.RUNNING,
    StepState.SUCCEEDED,
    StepState.FAILED,
    StepState.REUSED,
    StepState.SKIPPED,
    StepState.CANCELED,
)


def test_only_roots_are_ready_at_the_start():
    assert ready_steps(DIAMOND, {"a": P, "b": P, "c": P, "d": P}) == {"a"}


def test_siblings_become_ready_together_and_the_join_waits_for_both():
    assert ready_steps(DIAMOND, {"a": S, "b": P, "c": P, "d": P}) == {"b", "c"}
    assert ready_steps(DIAMOND, {"a": S, "b": S, "c": R, "d": P}) == set()
    assert ready_steps(DIAMOND, {"a": S, "b": S, "c": U, "d": P}) == {"d"}


def test_queued_or_running_steps_are_not_ready_again():
    assert ready_steps(DIAMOND, {"a": Q, "b": P, "c": P, "d": P}) == set()
    assert ready_steps(DIAMOND, {"a": S, "b": R, "c": Q, "d": P}) == set()


def test_a_failed_upstream_blocks_its_downstream_only():
    states = {"a": S, "b": F, "c": P, "d": P}
    assert blocked_steps(DIAMOND, states) == {"d"}
    assert ready_steps(DIAMOND, states) == {"c"}


def test_skips_propagate_through_skipped_and_canceled_steps():
    assert blocked_steps(DIAMOND, {"a": C, "b": P, "c": P, "d": P}) == {"b", "c"}
    assert blocked_steps(DIAMOND, {"a": S, "b": K, "c": S, "d": P}) == {"d"}


def test_downstream_closure():
    assert downstream_closure(DIAMOND, ["b"]) == {"b", "d"}
    assert downstream_closure(DIAMOND, ["a"]) == {"a", "b", "c", "d"}
    assert downstream_closure(DIAMOND, ["d"]) == {"d"}


def test_run_outcome():
    assert run_outcome([S, R], cancel_requested=False) is None
    assert run_outcome([S, U], cancel_requested=False) == RunState.SUCCEEDED
    assert run_outcome([S, F, K], cancel_requested=False) == RunState.FAILED
    assert run_outcome([S, C], cancel_requested=True) == RunState.CANCELED
    assert run_outcome([], cancel_requested=False) == RunState.SUCCEEDED


def test_node_ids_are_unique_when_names_sanitize_alike():
    spec = Pipeline(name="p", jobs={"a b": Step(name="a b", command="true"), "a_b": Step(name="a_b", command="true")})
    assert node_ids(spec) == {"a b": "step-a_b", "a_b": "step-a_b-s1"}
    assert dom_id('a"b <c>') == "step-a_b__c_"
