"""Forms of the component library: register from an upload, or from a pipeline's step."""

from __future__ import annotations

from django import forms

from pipelines_ui.forms import _Form
from pipelines_ui.models import Visibility
from pipelines_ui.selectors import user_editable_teams

_NAME_HELP = "Letters, digits, '_', '.' and '-', starting with a letter."


class ComponentRegisterForm(_Form):
    file = forms.FileField(
        help_text="A command component YAML (.yml), or a .zip holding it with its code folder.",
        widget=forms.ClearableFileInput(attrs={"accept": ".yml,.yaml,.zip"}),
    )
    team = forms.ModelChoiceField(queryset=None, empty_label=None, help_text="Teams where you are an editor or admin.")
    name = forms.CharField(
        max_length=255, required=False, help_text="Leave blank to use the YAML's name. " + _NAME_HELP
    )
    version = forms.CharField(
        max_length=64, required=False, help_text="Leave blank to use the YAML's version, else the next number."
    )
    visibility = forms.ChoiceField(choices=Visibility.choices, initial=Visibility.TEAM)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = user_editable_teams(user)


class StepComponentForm(_Form):
    name = forms.CharField(max_length=255, help_text=_NAME_HELP)
    version = forms.CharField(max_length=64, required=False, help_text="Leave blank for the next number.")
    visibility = forms.ChoiceField(choices=Visibility.choices, initial=Visibility.TEAM)
