"""Team pages (members, roles, invitations, secrets), accepting an invitation, and deleting a pipeline.

Access: a team the user is not in is 404 (it does not exist for them); a member whose role
may not do something gets 403; admins manage members and secrets. Anyone may create a team.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.text import capfirst
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from pipelines_ui import deletion, selectors, team_secrets, teams
from pipelines_ui.models import Invitation, Membership, Pipeline, Role, Team
from pipelines_ui.team_forms import InvitationSignUpForm, MemberAddForm, RoleForm, TeamCreateForm, TeamSecretForm

SIGN_IN_BACKEND = "django.contrib.auth.backends.ModelBackend"


def _get_team_for_user(request: HttpRequest, team_id: int) -> tuple[Team, str]:
    """The team and the user's role in it; 404 when the user is not a member."""
    team = get_object_or_404(Team, pk=team_id, memberships__user=request.user)
    return team, selectors.user_role(request.user, team) or ""


def _forbidden(request: HttpRequest, team: Team, role: str, what: str) -> HttpResponse:
    return render(
        request, "teams/forbidden.html", {"team": team, "role": role, "what": what, "nav": "teams"}, status=403
    )


def _accept_url(request: HttpRequest):
    return lambda token: request.build_absolute_uri(reverse("invitation_accept", args=[token]))


# ---- teams ---------------------------------------------------------------------------


@login_required
def team_list(request: HttpRequest) -> HttpResponse:
    return render(request, "teams/team_list.html", {"teams": teams.teams_for_user(request.user), "nav": "teams"})


@login_required
def team_create(request: HttpRequest) -> HttpResponse:
    form = TeamCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            team = teams.team_create(name=form.cleaned_data["name"], user=request.user)
        except teams.TeamError as exc:
            form.add_error("name", str(exc))
        else:
            messages.success(request, f"Created {team.name}; you are its admin. Add its members below.")
            return redirect("team_detail", team_id=team.pk)
    return render(request, "teams/team_create.html", {"form": form, "nav": "teams"})


def _render_team(
    request: HttpRequest,
    team: Team,
    role: str,
    *,
    add_form: MemberAddForm | None = None,
    added: teams.AddResult | None = None,
    secret_form: TeamSecretForm | None = None,
    status: int = 200,
) -> HttpResponse:
    is_admin = role == Role.ADMIN
    is_last_admin = is_admin and not team.memberships.filter(role=Role.ADMIN).exclude(user=request.user).exists()
    return render(
        request,
        "teams/team_detail.html",
        {
            "team": team,
            "role": role,
            "is_admin": is_admin,
            "is_last_admin": is_last_admin,
            "members": teams.team_members(team),
            "invitations": teams.pending_invitations(team) if is_admin else [],
            "add_form": add_form or MemberAddForm(),
            "roles": Role.choices,
            "added": added,
            "secrets": team_secrets.team_secrets(team),
            "secret_form": secret_form or TeamSecretForm(),
            "nav": "teams",
        },
        status=status,
    )


@login_required
def team_detail(request: HttpRequest, team_id: int) -> HttpResponse:
    team, role = _get_team_for_user(request, team_id)
    return _render_team(request, team, role)


@login_required
@require_POST
def member_add(request: HttpRequest, team_id: int) -> HttpResponse:
    team, role = _get_team_for_user(request, team_id)
    if role != Role.ADMIN:
        return _forbidden(request, team, role, "add members")
    form = MemberAddForm(request.POST)
    if not form.is_valid():
        return _render_team(request, team, role, add_form=form, status=400)
    try:
        result = teams.member_add(
            team=team,
            identifier=form.cleaned_data["identifier"],
            role=form.cleaned_data["role"],
            by=request.user,
            accept_url=_accept_url(request),
        )
    except teams.TeamError as exc:
        form.add_error("identifier", str(exc))
        return _render_team(request, team, role, add_form=form, status=400)
    if result.invitation is not None:
        # The link is in this response only (the database has its hash): no redirect to lose it.
        return _render_team(request, team, role, added=result)
    member = result.membership
    messages.success(request, f"Added {member.user.get_username()} to {team.name} as {member.role}.")
    return redirect("team_detail", team_id=team.pk)


def _membership(team: Team, membership_id: int) -> Membership:
    return get_object_or_404(Membership.objects.select_related("user", "team"), pk=membership_id, team=team)


@login_required
@require_POST
def member_role(request: HttpRequest, team_id: int, membership_id: int) -> HttpResponse:
    team, role = _get_team_for_user(request, team_id)
    if role != Role.ADMIN:
        return _forbidden(request, team, role, "change roles")
    membership = _membership(team, membership_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose viewer, editor or admin.")
        return redirect("team_detail", team_id=team.pk)
    try:
        changed = teams.member_change_role(membership=membership, role=form.cleaned_data["role"])
    except teams.TeamError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{changed.user.get_username()} is now {changed.role}.")
    return redirect("team_detail", team_id=team.pk)


@login_required
@require_POST
def member_remove(request: HttpRequest, team_id: int, membership_id: int) -> HttpResponse:
    team, role = _get_team_for_user(request, team_id)
    if role != Role.ADMIN:
        return _forbidden(request, team, role, "remove members")
    membership = _membership(team, membership_id)
    try:
        teams.member_remove(membership=membership)
    except teams.TeamError as exc:
        messages.error(request, str(exc))
        return redirect("team_detail", team_id=team.pk)
    if membership.user == request.user:
        messages.success(request, f"You left {team.name}.")
        return redirect("team_list")
    messages.success(request, f"Removed {membership.user.get_username()} from {team.name}.")
    return redirect("team_detail", team_id=team.pk)


@login_required
@require_POST
def team_leave(request: HttpRequest, team_id: int) -> HttpResponse:
    team, _role = _get_team_for_user(request, team_id)
    membership = get_object_or_404(Membership.objects.select_related("user", "team"), team=team, user=request.user)
    try:
        teams.member_remove(membership=membership)
    except teams.TeamError as exc:
        messages.error(request, str(exc))
        return redirect("team_detail", team_id=team.pk)
    messages.success(request, f"You left {team.name}.")
    return redirect("team_list")


@login_required
@require_POST
def invitation_revoke(request: HttpRequest, team_id: int, invitation_id: int) -> HttpResponse:
    team, role = _get_team_for_user(request, team_id)
    if role != Role.ADMIN:
        return _forbidden(request, team, role, "revoke invitations")
    invitation = get_object_or_404(Invitation, pk=invitation_id, team=team)
    teams.invitation_revoke(invitation=invitation)
    messages.success(request, f"The invitation for {invitation.email} no longer works.")
    return redirect("team_detail", team_id=team.pk)


# ---- secrets (every member sees their names; admins set and delete them) ----------------


@login_required
@sensitive_post_parameters("value")
@require_POST
def secret_set(request: HttpRequest, team_id: int) -> HttpResponse:
    team, role = _get_team_for_user(request, team_id)
    if role != Role.ADMIN:
        return _forbidden(request, team, role, "manage the team's secrets")
    form = TeamSecretForm(request.POST)
    if form.is_valid():
        try:
            secret, created = team_secrets.secret_set(
                team=team, name=form.cleaned_data["name"], value=form.cleaned_data["value"], by=request.user
            )
        except team_secrets.TeamSecretError as exc:
            form.add_error(exc.field, capfirst(str(exc)))
        else:
            messages.success(request, f"{'Added' if created else 'Replaced'} secret {secret.name}.")
            return redirect("team_detail", team_id=team.pk)
    return _render_team(request, team, role, secret_form=form, status=400)


@login_required
@require_POST
def secret_delete(request: HttpRequest, team_id: int, secret_name: str) -> HttpResponse:
    team, role = _get_team_for_user(request, team_id)
    if role != Role.ADMIN:
        return _forbidden(request, team, role, "delete the team's secrets")
    if not team_secrets.secret_delete(team=team, name=secret_name):
        # Another team's secret, or one deleted since the page was shown: 404, as for a member.
        raise Http404("No such secret in this team.")
    messages.success(request, f"Deleted secret {secret_name}.")
    return redirect("team_detail", team_id=team.pk)


# ---- accepting an invitation (open to anyone holding the link) ------------------------


def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    state, invitation = teams.invitation_lookup(token)
    if state is not teams.InvitationState.VALID:
        return render(
            request,
            "teams/invitation_invalid.html",
            {"state": state.value, "invitation": invitation},
            status=404 if state is teams.InvitationState.UNKNOWN else 410,
        )
    team = invitation.team
    if request.user.is_authenticated:
        member = Membership.objects.filter(team=team, user=request.user).first()
        if request.method == "POST":
            if member is None:
                try:
                    member = teams.invitation_accept(token=token, user=request.user)
                except teams.TeamError as exc:  # used or expired since the page was shown
                    messages.error(request, str(exc))
                    return redirect("team_list")
                messages.success(request, f"Welcome to {team.name}: you are {member.role}.")
            else:
                messages.info(request, f"You are already a member of {team.name} ({member.role}).")
            return redirect("team_detail", team_id=team.pk)
        return render(
            request, "teams/invitation_accept.html", {"invitation": invitation, "member": member, "token": token}
        )
    form = InvitationSignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = teams.invitation_sign_up(
                token=token,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
                email=invitation.email,
            )
        except teams.TeamError as exc:
            form.add_error(None, str(exc))
        else:
            login(request, user, backend=SIGN_IN_BACKEND)
            messages.success(request, f"Welcome to {team.name}: you are {invitation.role}.")
            return redirect("team_detail", team_id=team.pk)
    return render(
        request,
        "teams/invitation_accept.html",
        {"invitation": invitation, "form": form, "token": token, "login_next": request.path},
        status=400 if form.is_bound else 200,
    )


# ---- deleting a pipeline (team admins) ---------------------------------------------------


@login_required
def pipeline_delete(request: HttpRequest, pk: int) -> HttpResponse:
    pipeline = get_object_or_404(Pipeline.objects.for_user(request.user).select_related("team"), pk=pk)
    role = selectors.user_role(request.user, pipeline.team) or ""
    if role != Role.ADMIN:
        return _forbidden(request, pipeline.team, role, f"delete {pipeline.name}")
    if request.method == "POST":
        try:
            deletion.pipeline_delete(pipeline=pipeline)
        except deletion.PipelineDeleteError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Deleted {pipeline.name} with its versions and runs.")
            return redirect("pipeline_list")
    summary = deletion.pipeline_delete_summary(pipeline)
    return render(
        request,
        "teams/pipeline_delete.html",
        {"pipeline": pipeline, "summary": summary, "nav": "pipelines"},
        status=409 if request.method == "POST" else 200,
    )
