"""Forms of the team pages: a new team, adding a member, a role, signing up through an invitation,
setting a team secret."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm

from pipelines_ui.models import Role
from pipelines_ui.team_secrets import MAX_NAME_LENGTH
from pipelines_ui.teams import TEAM_NAME_MAX


class TeamCreateForm(forms.Form):
    name = forms.CharField(max_length=TEAM_NAME_MAX, help_text="Unique on this Stepwise; you become its admin.")


class MemberAddForm(forms.Form):
    identifier = forms.CharField(
        label="Username or email",
        max_length=254,
        help_text="A username must match exactly. An email no account uses gets an invitation link.",
    )
    role = forms.ChoiceField(choices=Role.choices, initial=Role.EDITOR)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class SecretValueInput(forms.Textarea):
    """A textarea that never puts its value back into the page, not even after a form error:
    the value was typed once and stays on the server (PasswordInput does the same, on one line)."""

    def format_value(self, value):
        return None


class TeamSecretForm(forms.Form):
    """Only shapes what was typed: pipelines_ui.team_secrets says what a name or a value may be,
    here and for the API alike, so both fields may come empty and get its messages."""

    # django-bootstrap4 marks every valid field of a bound form green: the emptied value too.
    bound_css_class = ""

    name = forms.CharField(
        required=False,
        max_length=MAX_NAME_LENGTH,
        widget=forms.TextInput(attrs={"placeholder": "registry_token", "class": "text-monospace"}),
        help_text="The name of the <code>type: secret</code> pipeline input it feeds. An existing name is replaced.",
    )
    value = forms.CharField(
        required=False,
        strip=False,
        widget=SecretValueInput(
            attrs={
                "rows": 3,
                "placeholder": "Paste the token or key",
                "autocomplete": "off",
                "spellcheck": "false",
                "autocapitalize": "off",
                "class": "text-monospace",
            }
        ),
        help_text="Never shown again, not even to admins. Several lines (a PEM key) are kept as typed.",
    )

    def clean_value(self) -> str:
        # Browsers send a textarea's line breaks as CRLF; keys and tokens mean LF.
        value = self.cleaned_data["value"].replace("\r\n", "\n")
        # A pasted token often comes with a stray space or line break; a key of several lines
        # keeps its own (an OpenSSH key needs its final newline).
        if "\n" not in value.strip():
            value = value.strip()
        return value


class InvitationSignUpForm(UserCreationForm):
    """A new account for the invitation's email; Django's password validators apply."""

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username",)
