"""Creating, checking and revoking API tokens."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from pipelines_ui.api.models import ApiToken, Scope
from pipelines_ui.models import Membership, Team

TOKEN_PREFIX = "swt_"
# last_used_at is written at most this often per token: not one UPDATE per API call.
LAST_USED_GRANULARITY = timedelta(minutes=1)
MAX_EXPIRY_DAYS = 3650


class TokenError(ValueError):
    """A token request that cannot be granted; the message says which part is wrong."""


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    secret: str  # shown once, never stored


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_create(
    *, user, name: str, scopes: list[str], team: Team | None = None, expires_days: int | None = None
) -> NewToken:
    name = name.strip()
    if not name:
        raise TokenError("name: give the token a name, to tell it apart later")
    if len(name) > 100:
        raise TokenError("name: at most 100 characters")
    unknown = sorted(set(scopes) - set(Scope.values))
    if unknown:
        raise TokenError(f"scopes: unknown {', '.join(unknown)} (choose from {', '.join(Scope.values)})")
    if not scopes:
        raise TokenError("scopes: choose at least one of " + ", ".join(Scope.values))
    if team is not None and not Membership.objects.filter(user=user, team=team).exists():
        raise TokenError(f"team: you are not a member of {team.name}")
    if expires_days is not None and not 1 <= expires_days <= MAX_EXPIRY_DAYS:
        raise TokenError(f"expires_days: between 1 and {MAX_EXPIRY_DAYS}")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        team=team,
        name=name,
        scopes=[s for s in Scope.values if s in scopes],
        prefix=secret[: len(TOKEN_PREFIX) + 6],
        token_sha256=digest(secret),
        expires_at=timezone.now() + timedelta(days=expires_days) if expires_days else None,
    )
    return NewToken(token=token, secret=secret)


def token_authenticate(secret: str) -> ApiToken | None:
    """The active token with this secret (its user active too), or None; records its use."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    now = timezone.now()
    token = (
        ApiToken.objects.select_related("user", "team")
        .filter(token_sha256=digest(secret), revoked_at__isnull=True, user__is_active=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .first()
    )
    if token is None:
        return None
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_GRANULARITY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def token_revoke(*, user, token_id: int) -> bool:
    return bool(
        ApiToken.objects.filter(pk=token_id, user=user, revoked_at__isnull=True).update(revoked_at=timezone.now())
    )


def user_tokens(user):
    return ApiToken.objects.filter(user=user).select_related("team")
