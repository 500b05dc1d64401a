"""Teams and their members: create a team, add or invite members, change roles, leave, accept invitations.

Every change of a team's members takes a row lock on the team first, so that two admins
demoting each other at the same moment cannot leave the team without an admin.
Authorization (who may call these) is the views' job; these enforce the team's own rules.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.utils import timezone

from pipelines_ui.models import Invitation, Membership, Role, Team, validate_team_name

INVITATION_TTL = timedelta(days=7)
TEAM_NAME_MAX = 100


class TeamError(Exception):
    """A request the team's rules refuse; the message says why, for the person who asked."""


@dataclass(frozen=True)
class AddResult:
    """What adding by username or email did: a new member, or an invitation with its one-time link."""

    membership: Membership | None = None
    invitation: Invitation | None = None
    link: str = ""
    email_sent: bool = False


class InvitationState(enum.Enum):
    VALID = "valid"
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ---- reads ---------------------------------------------------------------------------


def teams_for_user(user) -> QuerySet[Team]:
    """The user's teams, each with `role` (the user's) and `member_count`."""
    if not user.is_authenticated:
        return Team.objects.none()
    role = Membership.objects.filter(team=OuterRef("pk"), user=user).values("role")[:1]
    return (
        # pk__in, not memberships__user: a join there would make the count count only the user.
        Team.objects.filter(pk__in=Membership.objects.filter(user=user).values("team_id"))
        .annotate(member_count=Count("memberships"), role=Subquery(role))
        .order_by("name")
    )


def team_members(team: Team) -> QuerySet[Membership]:
    return team.memberships.select_related("user").order_by("user__username")


def pending_invitations(team: Team) -> QuerySet[Invitation]:
    return team.invitations.filter(accepted_at__isnull=True, expires_at__gt=timezone.now()).select_related("invited_by")


def invitation_lookup(token: str) -> tuple[InvitationState, Invitation | None]:
    invitation = Invitation.objects.select_related("team").filter(token_sha256=token_hash(token)).first()
    if invitation is None:
        return InvitationState.UNKNOWN, None
    if invitation.accepted_at is not None:
        return InvitationState.USED, invitation
    if invitation.expires_at <= timezone.now():
        return InvitationState.EXPIRED, invitation
    return InvitationState.VALID, invitation


# ---- teams ---------------------------------------------------------------------------


@transaction.atomic
def team_create(*, name: str, user) -> Team:
    """A new team with `user` as its first admin."""
    name = name.strip()
    if not name:
        raise TeamError("Give the team a name.")
    try:
        validate_team_name(name)
    except ValidationError as exc:
        raise TeamError(exc.messages[0]) from None
    if Team.objects.filter(name__iexact=name).exists():
        raise TeamError(f"A team named “{name}” already exists: pick another name.")
    try:
        with transaction.atomic():
            team = Team.objects.create(name=name)
    except IntegrityError:
        raise TeamError(f"A team named “{name}” already exists: pick another name.") from None
    Membership.objects.create(team=team, user=user, role=Role.ADMIN)
    return team


def _lock(team: Team) -> None:
    Team.objects.select_for_update().filter(pk=team.pk).first()


def _other_admins(team: Team, membership: Membership) -> bool:
    return team.memberships.filter(role=Role.ADMIN).exclude(pk=membership.pk).exists()


def _last_admin_error(membership: Membership, what: str) -> TeamError:
    return TeamError(
        f"{membership.user.get_username()} is the last admin of {membership.team.name} and cannot {what}:"
        " make another member admin first."
    )


# ---- members -------------------------------------------------------------------------


def _check_role(role: str) -> str:
    if role not in Role.values:
        raise TeamError(f"“{role}” is not a role: choose viewer, editor or admin.")
    return role


@transaction.atomic
def member_add(*, team: Team, identifier: str, role: str, by, accept_url: Callable[[str], str]) -> AddResult:
    """Add the user with exactly this username, or this email; invite an email no account has.

    A username must match exactly (no prefix or case-insensitive guess picks someone else).
    """
    _check_role(role)
    identifier = identifier.strip()
    if not identifier:
        raise TeamError("Enter a username or an email address.")
    users = get_user_model().objects
    if "@" in identifier:
        matches = list(users.filter(email__iexact=identifier, is_active=True)[:2])
        if len(matches) > 1:
            raise TeamError(f"Several accounts use {identifier}: add the person by username instead.")
        if not matches:
            return invitation_create(team=team, email=identifier, role=role, by=by, accept_url=accept_url)
        user = matches[0]
    else:
        user = users.filter(username=identifier, is_active=True).first()
        if user is None:
            raise TeamError(
                f"No user is named “{identifier}” (names must match exactly). To invite someone"
                " without an account, enter their email address."
            )
    _lock(team)
    existing = Membership.objects.filter(team=team, user=user).first()
    if existing is not None:
        raise TeamError(f"{user.get_username()} is already a member of {team.name} ({existing.role}).")
    return AddResult(membership=Membership.objects.create(team=team, user=user, role=role))


@transaction.atomic
def member_change_role(*, membership: Membership, role: str) -> Membership:
    _check_role(role)
    _lock(membership.team)
    membership = Membership.objects.select_related("team", "user").get(pk=membership.pk)
    if membership.role == Role.ADMIN and role != Role.ADMIN and not _other_admins(membership.team, membership):
        raise _last_admin_error(membership, f"become {role}")
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def member_remove(*, membership: Membership) -> None:
    """Remove a member (or, when it is the user's own membership, leave the team)."""
    _lock(membership.team)
    membership = Membership.objects.select_related("team", "user").filter(pk=membership.pk).first()
    if membership is None:
        return
    if membership.role == Role.ADMIN and not _other_admins(membership.team, membership):
        raise _last_admin_error(membership, "leave the team")
    membership.delete()


# ---- invitations ---------------------------------------------------------------------


def _send_invitation(invitation: Invitation, link: str) -> bool:
    inviter = invitation.invited_by.get_username() if invitation.invited_by else "An admin"
    body = (
        f"{inviter} invited you to the team {invitation.team.name} on Stepwise, as {invitation.role}.\n\n"
        f"Open this link to join (it works once, until {invitation.expires_at:%Y-%m-%d %H:%M} UTC):\n{link}\n"
    )
    try:
        send_mail(
            f"Join {invitation.team.name} on Stepwise",
            body,
            settings.DEFAULT_FROM_EMAIL,
            [invitation.email],
            fail_silently=False,
        )
    except Exception:  # noqa: BLE001 - any mail failure leaves the link to be passed on by hand
        return False
    return True


def invitation_create(*, team: Team, email: str, role: str, by, accept_url: Callable[[str], str]) -> AddResult:
    """A new invitation for `email`; an earlier pending one for the same email stops working.

    The token exists only in the returned link (and the email): the database keeps its sha256.
    """
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    _check_role(role)
    try:
        validate_email(email)
    except ValidationError:
        raise TeamError(f"“{email}” is not a valid email address.") from None
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        _lock(team)
        team.invitations.filter(email__iexact=email, accepted_at__isnull=True).delete()
        invitation = Invitation.objects.create(
            team=team,
            email=email,
            role=role,
            token_sha256=token_hash(token),
            invited_by=by,
            expires_at=timezone.now() + INVITATION_TTL,
        )
    link = accept_url(token)
    return AddResult(invitation=invitation, link=link, email_sent=_send_invitation(invitation, link))


def invitation_revoke(*, invitation: Invitation) -> None:
    Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True).delete()


@transaction.atomic
def invitation_accept(*, token: str, user) -> Membership:
    """Make `user` a member with the invitation's role; the invitation is then used up.

    An existing member keeps their role, and the invitation stays unused for its addressee.
    """
    invitation = (
        Invitation.objects.select_for_update().select_related("team").filter(token_sha256=token_hash(token)).first()
    )
    if invitation is None:
        raise TeamError("This invitation link is not valid: ask a team admin for a new one.")
    if invitation.accepted_at is not None:
        raise TeamError("This invitation has already been used: ask a team admin for a new one.")
    if invitation.expires_at <= timezone.now():
        raise TeamError("This invitation has expired: ask a team admin for a new one.")
    _lock(invitation.team)
    existing = Membership.objects.filter(team=invitation.team, user=user).first()
    if existing is not None:
        return existing
    membership = Membership.objects.create(team=invitation.team, user=user, role=invitation.role)
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    return membership


@transaction.atomic
def invitation_sign_up(*, token: str, username: str, password: str, email: str):
    """Create the account and accept the invitation with it, or do neither."""
    state, _invitation = invitation_lookup(token)
    if state is not InvitationState.VALID:
        raise TeamError("This invitation link can no longer be used: ask a team admin for a new one.")
    try:
        with transaction.atomic():
            user = get_user_model().objects.create_user(username=username, email=email, password=password)
    except IntegrityError:  # taken since the form checked
        raise TeamError(f"The username “{username}” is taken: choose another.") from None
    invitation_accept(token=token, user=user)
    return user
