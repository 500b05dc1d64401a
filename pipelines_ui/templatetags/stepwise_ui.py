"""Formatting filters for the authoring pages."""

from __future__ import annotations

from django import template

from pipelines_ui.forms import literal_text
from stepwise.spec.model import DataPath, JobOutput, ParentInput

register = template.Library()


@register.filter
def short_hash(value: str, length: int = 10) -> str:
    return (value or "")[: int(length)]


@register.filter
def node_id(name: str, ids: dict[str, str]) -> str:
    """The id of step `name`'s node in the drawn graph; `ids` is `stepwise.dag.node_ids` of that graph."""
    return ids.get(name, "")


@register.filter
def binding_text(binding) -> str:
    """How a step input's binding reads in the step list."""
    if isinstance(binding, ParentInput):
        return f"pipeline input {binding.name}"
    if isinstance(binding, JobOutput):
        return f"{binding.job}.{binding.output}"
    if isinstance(binding, DataPath):
        return f"files {binding.key}"
    if binding is None:
        return "(default)"
    return literal_text(binding)


@register.filter
def is_upstream_binding(binding) -> bool:
    return isinstance(binding, JobOutput)
