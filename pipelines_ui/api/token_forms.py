from __future__ import annotations

from django import forms

from pipelines_ui.api.models import Scope
from pipelines_ui.api.tokens import MAX_EXPIRY_DAYS
from pipelines_ui.models import Team


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses it, e.g. “nightly CI”.")
    team = forms.ModelChoiceField(
        queryset=Team.objects.none(),
        required=False,
        empty_label="All my teams",
        help_text="Limit the token to one team: it sees nothing of the others.",
    )
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, widget=forms.CheckboxSelectMultiple, initial=[Scope.READ, Scope.RUN]
    )
    expires_days = forms.IntegerField(
        min_value=1,
        max_value=MAX_EXPIRY_DAYS,
        required=False,
        initial=90,
        label="Expires after (days)",
        help_text="Leave empty for a token that does not expire.",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = Team.objects.filter(memberships__user=user).order_by("name")
