"""The sign-in form: Django's, refusing a user name no account can have before anything records
the attempt (django-axes stores it in a 255-character column, which PostgreSQL enforces); and the
name django-axes records for any sign-in form (the admin's too), cut to that column."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError


class SignInForm(AuthenticationForm):
    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        longest = get_user_model()._meta.get_field(get_user_model().USERNAME_FIELD).max_length or 150
        if len(username) > longest:
            # The message of any wrong sign-in: it says nothing about which accounts exist.
            raise ValidationError(
                self.error_messages["invalid_login"],
                code="invalid_login",
                params={"username": self.username_field.verbose_name},
            )
        return username


AXES_USERNAME_MAX = 255


def axes_username(request, credentials: dict | None) -> str | None:
    """AXES_USERNAME_CALLABLE: the name axes records and locks out, as its column holds it."""
    source = credentials if credentials else getattr(request, "POST", {})
    username = source.get("username") if source else None
    return username[:AXES_USERNAME_MAX] if isinstance(username, str) else username
