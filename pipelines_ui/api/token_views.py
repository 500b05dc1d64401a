"""/account/tokens/: create (the token shown once), list with last use, revoke."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from pipelines_ui.api import tokens
from pipelines_ui.api.token_forms import TokenForm

_SHOWN_ONCE = "stepwise_new_token"
_SHOWN_FOR_S = 120


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
            # Shown on the next page load only, from a signed session cookie of this browser
            # (never written to its disk; read within _SHOWN_FOR_S): never in the session, a
            # database row, and a reload does not post the form again.
            response = redirect("token_list")
            response.set_signed_cookie(
                _SHOWN_ONCE,
                json.dumps({"id": new.token.pk, "secret": new.secret}),
                salt=_SHOWN_ONCE,
                path=request.path,
                secure=settings.SESSION_COOKIE_SECURE or request.is_secure(),
                httponly=True,
                samesite="Strict",
            )
            return response
    created = _shown_once(request)
    response = render(
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
    if _SHOWN_ONCE in request.COOKIES:
        response.delete_cookie(_SHOWN_ONCE, path=request.path, samesite="Strict")
    if created is not None:
        response["Cache-Control"] = "no-store"
    return response


def _shown_once(request: HttpRequest) -> dict | None:
    value = request.get_signed_cookie(_SHOWN_ONCE, default=None, salt=_SHOWN_ONCE, max_age=_SHOWN_FOR_S)
    try:
        created = json.loads(value) if value else None
    except ValueError:
        return None
    # Another user's browser session cannot be given it: the token must be this user's.
    if not isinstance(created, dict) or not tokens.user_tokens(request.user).filter(pk=created.get("id")).exists():
        return None
    return created


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    if tokens.token_revoke(user=request.user, token_id=token_id):
        messages.success(request, "Token revoked: it no longer works.")
    else:
        messages.warning(request, "No such active token.")
    return redirect("token_list")
