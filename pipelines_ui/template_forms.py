"""Forms of the templates pages: publish, use (a typed parameter form), duplicate."""

from __future__ import annotations

from dataclasses import replace

from django import forms
from django.utils.html import escape

from pipelines_ui.markdown import MAX_SOURCE_CHARS
from pipelines_ui.models import Pipeline, PipelineVersion, Template, TemplateVersion, Visibility
from pipelines_ui.template_services import (
    PARAMETER_DESCRIPTION_MAX,
    TITLE_MAX,
    TemplateError,
    parameter_inputs,
    tags_clean,
)
from runs.forms import RunForm
from stepwise.spec.model import Pipeline as PipelineSpec

PARAM_PREFIX = "param_"


class PublishForm(forms.Form):
    title = forms.CharField(max_length=TITLE_MAX)
    description = forms.CharField(
        required=False,
        max_length=MAX_SOURCE_CHARS,
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text="Markdown: **bold**, lists, `code`, [links](https://example.com). HTML is shown as text.",
    )
    tags = forms.CharField(
        required=False, help_text="Comma-separated, e.g. “vision, training”: people filter the gallery by them."
    )
    visibility = forms.ChoiceField(choices=Visibility.choices, widget=forms.RadioSelect, initial=Visibility.TEAM)
    version = forms.TypedChoiceField(coerce=int, help_text="The pipeline version people will start from.")

    def __init__(self, *args, pipeline: Pipeline, spec: PipelineSpec, template: Template | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.pipeline = pipeline
        numbers = list(pipeline.versions.order_by("-number").values_list("number", flat=True))
        self.fields["version"].choices = [(n, f"v{n}" + (" (latest)" if i == 0 else "")) for i, n in enumerate(numbers)]
        if numbers:
            self.fields["version"].initial = numbers[0]
        old: dict[str, str] = {}
        if template is not None:
            self.fields["title"].initial = template.title
            self.fields["description"].initial = template.description
            self.fields["tags"].initial = ", ".join(template.tags or [])
            self.fields["visibility"].initial = template.visibility
            if template.latest_version is not None:
                old = template.latest_version.parameter_descriptions or {}
        else:
            self.fields["title"].initial = spec.display_name or pipeline.name
            self.fields["description"].initial = pipeline.description
        self.parameter_names = []
        for name, decl in parameter_inputs(spec).items():
            key = PARAM_PREFIX + name
            self.fields[key] = forms.CharField(
                label=name,
                required=False,
                max_length=PARAMETER_DESCRIPTION_MAX,
                initial=old.get(name, decl.description),
                # Rendered as HTML by the form's template: the default is the author's text.
                help_text=escape(f"{decl.type}" + (f", default {decl.default}" if decl.default is not None else "")),
            )
            self.parameter_names.append(name)

    def parameter_fields(self) -> list[forms.BoundField]:
        return [self[PARAM_PREFIX + name] for name in self.parameter_names]

    def clean_tags(self) -> list[str]:
        try:
            return tags_clean(self.cleaned_data.get("tags", ""))
        except TemplateError as exc:
            raise forms.ValidationError(str(exc)) from None

    def chosen_version(self) -> PipelineVersion:
        return self.pipeline.versions.get(number=self.cleaned_data["version"])

    def parameter_descriptions(self) -> dict[str, str]:
        return {name: self.cleaned_data.get(PARAM_PREFIX + name, "") for name in self.parameter_names}


class _TargetMixin:
    """A team among those the user may add pipelines to, and the new pipeline's name."""

    def _add_target_fields(self, teams, name_initial: str) -> None:
        target_fields = {
            "team": forms.ModelChoiceField(
                queryset=teams,
                empty_label=None,
                help_text="Teams where you are editor or admin.",
                error_messages={"invalid_choice": "Pick one of your teams where you are editor or admin."},
            ),
            "name": forms.CharField(max_length=255, initial=name_initial, label="New pipeline name"),
        }
        self.fields = {**target_fields, **self.fields}


class UseTemplateForm(_TargetMixin, RunForm):
    """Where the clone goes, and its parameters' defaults: the run form's typed fields, prefilled."""

    def __init__(self, *args, template_version: TemplateVersion, spec: PipelineSpec, teams, **kwargs):
        descriptions = template_version.parameter_descriptions or {}
        # The template's word for a parameter stands in for the spec's own.
        inputs = {
            name: replace(decl, description=descriptions.get(name) or decl.description)
            for name, decl in parameter_inputs(spec).items()
        }
        super().__init__(*args, spec=replace(spec, inputs=inputs), **kwargs)
        for name in self.OPTION_FIELDS:
            del self.fields[name]
        self._add_target_fields(teams, template_version.template.title[:255])


class DuplicateForm(_TargetMixin, forms.Form):
    def __init__(self, *args, pipeline: Pipeline, teams, **kwargs):
        super().__init__(*args, **kwargs)
        self._add_target_fields(teams, f"Copy of {pipeline.name}"[:255])
        if pipeline.team in teams:
            self.fields["team"].initial = pipeline.team.pk
