from __future__ import annotations

from django import forms

from pipelines_ui.api.endpoints import NAME


class EndpointForm(forms.Form):
    name = forms.RegexField(
        regex=NAME,
        max_length=100,
        help_text="Part of the URL callers use: lowercase letters, digits, - and _.",
        error_messages={"invalid": "Use lowercase letters, digits, - and _, starting with a letter or digit."},
    )
    version = forms.TypedChoiceField(coerce=int, help_text="The version calls run unless they name another.")
    description = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, pipeline, **kwargs):
        super().__init__(*args, **kwargs)
        numbers = pipeline.versions.order_by("-number").values_list("number", flat=True)
        self.fields["version"].choices = [(n, f"v{n}") for n in numbers]


class EndpointVersionForm(forms.Form):
    version = forms.TypedChoiceField(coerce=int)
    make_default = forms.BooleanField(required=False, initial=True, label="Make it the default")

    def __init__(self, *args, endpoint, **kwargs):
        super().__init__(*args, **kwargs)
        have = set(endpoint.versions.values_list("version__number", flat=True))
        numbers = endpoint.pipeline.versions.order_by("-number").values_list("number", flat=True)
        self.fields["version"].choices = [(n, f"v{n}") for n in numbers if n not in have]
