"""Forms of the team pages: a new team, adding a member, a role, signing up through an invitation."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm

from pipelines_ui.models import Role
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


class InvitationSignUpForm(UserCreationForm):
    """A new account for the invitation's email; Django's password validators apply."""

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username",)
