"""Why a step was, or was not, reused: its fingerprint compared with the last run of the same step."""

from __future__ import annotations

from runs.models import StepRun


def diff_parts(old: dict, new: dict) -> list[str]:
    """Human-readable differences between two fingerprints' parts, most telling first."""
    changes: list[str] = []
    if old.get("command") != new.get("command"):
        changes.append("the command changed")
    if old.get("code") != new.get("code"):
        changes.append("the code changed")
    old_inputs, new_inputs = old.get("inputs", {}), new.get("inputs", {})
    for name in sorted(set(old_inputs) | set(new_inputs)):
        before, after = old_inputs.get(name), new_inputs.get(name)
        if before == after:
            continue
        if before is None:
            changes.append(f"input {name} was added")
        elif after is None:
            changes.append(f"input {name} was removed")
        elif "secret" in before and "secret" in after:
            # Parts hold only whether a secret was given, never its value.
            changes.append(f"secret input {name} was {before['secret']}, now {after['secret']}")
        elif "secret" in before or "secret" in after:
            changes.append(f"input {name} {'became a secret' if 'secret' in after else 'is no longer secret'}")
        elif "value" in after and "value" in before:
            changes.append(f"input {name} changed from {before['value']!r} to {after['value']!r}")
        else:
            changes.append(f"the data of input {name} changed")
    if old.get("environment") != new.get("environment"):
        changes.append("the environment changed")
    if old.get("distribution") != new.get("distribution"):
        changes.append("the distribution changed")
    if old.get("environment_variables") != new.get("environment_variables"):
        changes.append("the environment variables changed")
    if old.get("outputs") != new.get("outputs"):
        changes.append("the outputs changed")
    return changes


def previous_step_run(step_run: StepRun) -> StepRun | None:
    """The same step in the pipeline's latest earlier run that computed a fingerprint."""
    return (
        StepRun.objects.filter(
            run__pipeline_id=step_run.run.pipeline_id, name=step_run.name, run_id__lt=step_run.run_id
        )
        .exclude(fingerprint="")
        .order_by("-run_id")
        .first()
    )


def explain(step_run: StepRun) -> dict:
    """What the run page shows under "why did (or didn't) this step reuse?"."""
    parts = step_run.fingerprint_parts or {}
    result: dict = {"fingerprint": step_run.fingerprint, "parts": parts, "changes": [], "compared_with": None}
    if step_run.reused_from_id:
        result["summary"] = f"reused from run #{step_run.reused_from.run_id}, step {step_run.reused_from.name}"
        return result
    if not step_run.fingerprint:
        result["summary"] = "not started yet"
        return result
    previous = previous_step_run(step_run)
    if previous is None:
        result["summary"] = "executed: no earlier run of this step"
        return result
    result["compared_with"] = previous.run_id
    changes = diff_parts(previous.fingerprint_parts or {}, parts)
    result["changes"] = changes
    if changes:
        result["summary"] = f"executed: compared with run #{previous.run_id}, " + "; ".join(changes)
    elif step_run.force or step_run.run.force_rerun:
        result["summary"] = "executed: a rerun was forced"
    elif step_run.reason:
        result["summary"] = f"executed: {step_run.reason}"
    else:
        result["summary"] = f"executed: same inputs as run #{previous.run_id}, but that result was not reusable"
    return result
