"""/account/tokens/: create (the token shown once), list with last use, revoke."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from pipelines_ui.api import tokens
from pipelines_ui.api.token_forms import TokenForm

_SHOWN_ONCE = "stepwise_new_token"


@login_required
def token_list(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            new = tokens.token_create(
                user=request.user, name=d["name"], scopes=d["scopes"], team=d["team"], expires_days=d["expires_days"]
            )
        except tokens.TokenError as exc:
            field, _, message = str(exc).partition(": ")
            form.add_error(field if field in form.fields else None, message or str(exc))
        else:
            # Shown on the next page load only: the session forgets it then, the database never had it.
            request.session[_SHOWN_ONCE] = {"id": new.token.pk, "secret": new.secret}
            return redirect("token_list")
    created = request.session.pop(_SHOWN_ONCE, None)
    return render(
        request,
        "account/tokens.html",
        {
            "form": form,
            "tokens": tokens.user_tokens(request.user),
            "created": created,
            "api_url": request.build_absolute_uri("/api/v1/"),
            "nav": "tokens",
        },
    )


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    if tokens.token_revoke(user=request.user, token_id=token_id):
        messages.success(request, "Token revoked: it no longer works.")
    else:
        messages.warning(request, "No such active token.")
    return redirect("token_list")
