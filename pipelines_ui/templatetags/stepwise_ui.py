"""Formatting filters for the authoring pages."""

from __future__ import annotations

from django import template

from pipelines_ui.forms import literal_text
from stepwise.dag import dom_id as _dom_id
from stepwise.spec.model import DataPath, JobOutput, ParentInput

register = template.Library()


@register.filter
def short_hash(value: str, length: int = 10) -> str:
    return (value or "")[: int(length)]


@register.filter
def dom_id(name: str) -> str:
    return _dom_id(name)


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
