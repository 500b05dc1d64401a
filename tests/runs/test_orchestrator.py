from __future__ import annotations

from runs.models import RunState, StepState
from runs.orchestrator import blocked_steps, downstream_closure, ready_steps, run_outcome

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
