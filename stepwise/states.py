"""Step and run states, their legal moves and how pages show them: the one home of each.

`runs.models` builds its TextChoices from these enums, the graph fills nodes from `STATE_FILLS`,
the badges take `STATE_CLASSES`, and the run page hands `page_display()` to its scripts through
`json_script`, so no state or colour is written anywhere else.
"""

from __future__ import annotations

from enum import StrEnum


class StepState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REUSED = "reused"
    SKIPPED = "skipped"
    CANCELED = "canceled"


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


# Every legal edge; terminal states have none, except that a failed attempt with
# retries left goes back to queued (the server's service checks the retry budget).
STEP_TRANSITIONS: dict[str, frozenset[str]] = {
    StepState.PENDING: frozenset({StepState.QUEUED, StepState.REUSED, StepState.SKIPPED}),
    StepState.QUEUED: frozenset({StepState.RUNNING, StepState.CANCELED, StepState.FAILED}),
    StepState.RUNNING: frozenset({StepState.SUCCEEDED, StepState.FAILED, StepState.CANCELED}),
    StepState.FAILED: frozenset({StepState.QUEUED}),
}
RUN_TRANSITIONS: dict[str, frozenset[str]] = {
    RunState.QUEUED: frozenset({RunState.RUNNING, RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELED}),
    RunState.RUNNING: frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELED}),
}

STEP_DONE = frozenset({StepState.SUCCEEDED, StepState.REUSED})
STEP_TERMINAL = frozenset(
    {StepState.SUCCEEDED, StepState.REUSED, StepState.FAILED, StepState.SKIPPED, StepState.CANCELED}
)
RUN_TERMINAL = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELED})

# Bootstrap 4 contextual classes (badges, table rows) by run or step state.
STATE_CLASSES: dict[str, str] = {
    "pending": "light",
    "queued": "secondary",
    "running": "primary",
    "succeeded": "success",
    "failed": "danger",
    "reused": "info",
    "skipped": "warning",
    "canceled": "dark",
    # A sweep's trials (runs.models.TrialState) share the steps' badges where their states do.
    "completed": "success",
    "early_terminated": "warning",
}
DEFAULT_CLASS = "light"

# Graph node fills by step state; the run page draws its legend from this map.
STATE_FILLS: dict[str, str] = {
    "pending": "#e9ecef",
    "queued": "#d6d8db",
    "running": "#b8daff",
    "succeeded": "#c3e6cb",
    "failed": "#f5c6cb",
    "reused": "#bee5eb",
    "skipped": "#fff3cd",
    "canceled": "#ced4da",
}
DEFAULT_FILL = "#ffffff"

# A fan-out drawn as one node takes the most telling state of its steps: the first present here.
GROUP_ORDER: tuple[str, ...] = (
    StepState.FAILED,
    StepState.RUNNING,
    StepState.QUEUED,
    StepState.PENDING,
    StepState.CANCELED,
    StepState.SKIPPED,
    StepState.SUCCEEDED,
    StepState.REUSED,
)


def step_rank(state: str) -> int:
    """How far a step has got (pending 0, queued 1, running 2, terminal 3): events never move a page back."""
    if state in STEP_TERMINAL:
        return 3
    return {StepState.PENDING: 0, StepState.QUEUED: 1, StepState.RUNNING: 2}.get(state, 0)


def run_rank(state: str) -> int:
    if state in RUN_TERMINAL:
        return 2
    return 1 if state == RunState.RUNNING else 0


def page_display() -> dict:
    """What the run page's scripts know of states, as plain JSON (handed over by `json_script`)."""
    return {
        "colors": dict(STATE_FILLS),
        "classes": dict(STATE_CLASSES),
        "step_rank": {str(s): step_rank(s) for s in StepState},
        "run_rank": {str(s): run_rank(s) for s in RunState},
        "group_order": [str(s) for s in GROUP_ORDER],
    }
