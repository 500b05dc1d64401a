"""Who may do what through the API: the user's role in the object's team, narrowed by the token.

A request authenticated by the browser session holds every scope; a token holds its own, and a
token limited to one team sees no other team's objects (404, as for a team the user is not in).
"""

from __future__ import annotations

from django.http import Http404
from rest_framework.exceptions import PermissionDenied

from pipelines_ui.api.models import ApiToken, Scope
from pipelines_ui.models import Membership, Role, Team

# The least role each scope's operations need in the object's team.
ROLE_FOR_SCOPE = {
    Scope.READ: (Role.VIEWER, Role.EDITOR, Role.ADMIN),
    Scope.RUN: (Role.EDITOR, Role.ADMIN),
    Scope.WRITE: (Role.EDITOR, Role.ADMIN),
    Scope.ADMIN: (Role.ADMIN,),
}
_NEEDS = {Scope.READ: "viewer", Scope.RUN: "editor", Scope.WRITE: "editor", Scope.ADMIN: "admin"}


def token_of(request) -> ApiToken | None:
    return request.auth if isinstance(request.auth, ApiToken) else None


def visible_team_ids(request) -> list[int]:
    """Teams whose objects this request may see at all."""
    ids = Membership.objects.filter(user=request.user).values_list("team_id", flat=True)
    token = token_of(request)
    if token is not None and token.team_id is not None:
        ids = ids.filter(team_id=token.team_id)
    return list(ids)


def team_named(request, name: str) -> Team:
    """The team of that name, when this caller may see it: otherwise a 404, as for one that does not exist."""
    team = Team.objects.filter(name=name, pk__in=visible_team_ids(request)).first()
    if team is None:
        raise Http404(f"No team named {name!r}")
    return team


def require_scope(request, scope: str) -> None:
    token = token_of(request)
    if token is not None and scope not in token.scopes:
        raise PermissionDenied(f"this token lacks the '{scope}' scope")


def require(request, team: Team | int, scope: str) -> str:
    """The user's role in `team` if this request may do `scope`'s operations there.

    Invisible team: 404 (the object does not exist for this caller); visible but a scope or role
    that does not allow it: 403 naming what is missing.
    """
    team_id = team if isinstance(team, int) else team.pk
    if team_id not in visible_team_ids(request):
        raise Http404("No such object")
    require_scope(request, scope)
    role = Membership.objects.filter(user=request.user, team_id=team_id).values_list("role", flat=True).first()
    if role not in ROLE_FOR_SCOPE[scope]:
        raise PermissionDenied(f"your role in this team is {role}; this needs {_NEEDS[scope]}")
    return role
