"""Teams: the services' rules (the last admin, exact usernames, invitations) and the team pages.

Personas: alice administers the team, bob edits in it, vera views it, charlie is elsewhere.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from pipelines_ui import deletion, team_secrets, teams
from pipelines_ui.models import Invitation, Membership, Pipeline, PipelineVersion, Role, Team, TeamSecret
from runs.models import Run, RunState, StepRun
from tests.conftest import make_user
from tests.runs.conftest import make_pipeline, make_run

LINK = re.compile(r"http://testserver/invitations/[A-Za-z0-9_-]+/")


def link_for(token: str) -> str:
    return f"http://testserver/invitations/{token}/"


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def vera(team):
    return make_user("vera", team, Role.VIEWER)


def invite(team, alice, email="new@example.com", role=Role.EDITOR) -> teams.AddResult:
    return teams.member_add(team=team, identifier=email, role=role, by=alice, accept_url=link_for)


def token_of(result: teams.AddResult) -> str:
    return result.link.rstrip("/").rsplit("/", 1)[1]


# ---- services ----------------------------------------------------------------------------


def test_the_creator_of_a_team_is_its_admin(db, bob):
    team = teams.team_create(name="  Vision ", user=bob)
    assert team.name == "Vision"
    assert Membership.objects.get(team=team).role == Role.ADMIN and team.members.get() == bob
    with pytest.raises(teams.TeamError, match="already exists"):
        teams.team_create(name="vision", user=bob)
    assert Team.objects.filter(name__iexact="vision").count() == 1


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ml/ops", "slash"),
        ("ml\\ops", "slash"),
        ("tab\tteam", "control characters"),
        ("a\u200bb", "control"),
        ("..", "cannot be . or .."),
    ],
)
def test_a_team_name_that_cannot_be_a_url_segment_is_refused(db, bob, name, message):
    # /api/v1/endpoints/{team}/{name}/runs/ could not be reached for such a team.
    with pytest.raises(teams.TeamError, match=message):
        teams.team_create(name=name, user=bob)
    assert not Team.objects.filter(name=name).exists()
    with pytest.raises(ValidationError, match=message):
        Team(name=name).full_clean()  # the admin's check


def test_adding_by_username_takes_the_exact_name_only(db, team, alice):
    make_user("alicia")
    make_user("al")
    for wrong in ("ali", "Alicia", "a%", "alici", "ALICE"):
        with pytest.raises(teams.TeamError, match="No user is named"):
            teams.member_add(team=team, identifier=wrong, role=Role.VIEWER, by=alice, accept_url=link_for)
    result = teams.member_add(team=team, identifier="al", role=Role.VIEWER, by=alice, accept_url=link_for)
    assert result.membership.user.username == "al" and result.membership.role == Role.VIEWER
    assert set(team.members.values_list("username", flat=True)) == {"alice", "al"}


def test_adding_an_existing_member_says_so(db, team, alice, bob):
    with pytest.raises(teams.TeamError, match=r"bob is already a member of Data Science \(editor\)"):
        teams.member_add(team=team, identifier="bob", role=Role.ADMIN, by=alice, accept_url=link_for)
    assert Membership.objects.get(user=bob).role == Role.EDITOR


def test_adding_by_the_email_of_an_account_adds_it(db, team, alice):
    dora = make_user("dora")
    dora.email = "Dora@Example.com"
    dora.save()
    result = invite(team, alice, email="dora@example.com", role=Role.VIEWER)
    assert result.invitation is None and result.membership.user == dora
    assert mail.outbox == []


def test_an_unknown_email_gets_an_invitation_stored_as_a_hash_and_emailed(db, team, alice):
    result = invite(team, alice)
    token = token_of(result)
    invitation = Invitation.objects.get()
    assert invitation.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(list(Invitation.objects.values_list()))
    assert len(token) >= 40
    assert invitation.expires_at - timezone.now() > timedelta(days=6)
    assert result.email_sent
    [message] = mail.outbox
    assert message.to == ["new@example.com"]
    assert result.link in message.body and "Data Science" in message.subject
    assert not Membership.objects.filter(team=team).exclude(user=alice).exists()


def test_an_invitation_is_kept_when_the_email_cannot_be_sent(db, team, alice):
    with mock.patch("pipelines_ui.teams.send_mail", side_effect=ConnectionRefusedError):
        result = invite(team, alice)
    assert not result.email_sent and result.link and Invitation.objects.count() == 1


def test_a_second_invitation_to_the_same_email_replaces_the_first(db, team, alice):
    first = invite(team, alice)
    second = invite(team, alice, email="NEW@example.com")
    assert teams.invitation_lookup(token_of(first))[0] is teams.InvitationState.UNKNOWN
    assert teams.invitation_lookup(token_of(second))[0] is teams.InvitationState.VALID


def test_an_invitation_works_once(db, team, alice):
    token = token_of(invite(team, alice, role=Role.VIEWER))
    dana = make_user("dana")
    membership = teams.invitation_accept(token=token, user=dana)
    assert membership.role == Role.VIEWER and membership.team == team
    invitation = Invitation.objects.get()
    assert invitation.accepted_by == dana and invitation.accepted_at is not None
    eve = make_user("eve")
    with pytest.raises(teams.TeamError, match="already been used"):
        teams.invitation_accept(token=token, user=eve)
    assert not Membership.objects.filter(user=eve).exists()


def test_an_expired_invitation_is_refused(db, team, alice):
    token = token_of(invite(team, alice))
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    dana = make_user("dana")
    with pytest.raises(teams.TeamError, match="expired"):
        teams.invitation_accept(token=token, user=dana)
    assert teams.invitation_lookup(token)[0] is teams.InvitationState.EXPIRED
    assert not Membership.objects.filter(user=dana).exists()


def test_a_member_opening_an_invitation_leaves_it_for_its_addressee(db, team, alice, bob):
    token = token_of(invite(team, alice, role=Role.ADMIN))
    assert teams.invitation_accept(token=token, user=bob).role == Role.EDITOR
    assert Invitation.objects.get().accepted_at is None


def test_the_last_admin_can_neither_leave_be_removed_nor_be_demoted(db, team, alice, bob):
    mine = Membership.objects.get(user=alice)
    with pytest.raises(teams.TeamError, match="last admin"):
        teams.member_remove(membership=mine)
    for role in (Role.EDITOR, Role.VIEWER):
        with pytest.raises(teams.TeamError, match="last admin"):
            teams.member_change_role(membership=mine, role=role)
    mine.refresh_from_db()
    assert mine.role == Role.ADMIN
    # With a second admin, the first may step down, and then the second is the last.
    teams.member_change_role(membership=Membership.objects.get(user=bob), role=Role.ADMIN)
    teams.member_change_role(membership=mine, role=Role.VIEWER)
    with pytest.raises(teams.TeamError, match="bob is the last admin"):
        teams.member_remove(membership=Membership.objects.get(user=bob))
    teams.member_remove(membership=mine)
    assert list(team.members.all()) == [bob]


def test_a_role_must_be_one_of_the_three(db, team, alice, bob):
    with pytest.raises(teams.TeamError, match="not a role"):
        teams.member_change_role(membership=Membership.objects.get(user=bob), role="owner")


def test_signing_up_through_an_invitation_creates_the_account_and_the_membership(db, team, alice):
    token = token_of(invite(team, alice, role=Role.VIEWER))
    user = teams.invitation_sign_up(token=token, username="newbie", password="a long passphrase", email="n@x.org")
    assert user.check_password("a long passphrase") and user.email == "n@x.org"
    assert Membership.objects.get(user=user).role == Role.VIEWER
    with pytest.raises(teams.TeamError):
        teams.invitation_sign_up(token=token, username="another", password="a long passphrase", email="n@x.org")
    assert not get_user_model().objects.filter(username="another").exists()


def test_my_teams_have_my_role_and_their_member_count(db, team, other_team, alice, bob, charlie):
    make_user("olga", other_team, Role.VIEWER)
    Membership.objects.create(team=other_team, user=bob, role=Role.VIEWER)
    rows = {t.name: (t.role, t.member_count) for t in teams.teams_for_user(bob)}
    assert rows == {"Data Science": (Role.EDITOR, 2), "Elsewhere": (Role.VIEWER, 3)}


# ---- the team pages ----------------------------------------------------------------------


def test_the_team_list_and_a_new_team(db, team, alice, bob):
    page = client_for(bob).get(reverse("team_list"))
    assert b"Data Science" in page.content and b"New team" in page.content
    response = client_for(bob).post(reverse("team_create"), {"name": "Robotics"})
    created = Team.objects.get(name="Robotics")
    assert response.status_code == 302 and response["Location"] == reverse("team_detail", args=[created.pk])
    again = client_for(alice).post(reverse("team_create"), {"name": "robotics"})
    assert again.status_code == 200 and "already exists" in again.content.decode()
    assert Team.objects.filter(name__iexact="robotics").count() == 1


def test_a_user_in_no_team_is_told_what_to_do(db):
    page = client_for(make_user("nomad")).get(reverse("team_list")).content.decode()
    assert "You are not in a team yet" in page and reverse("team_create") in page
    pipelines = client_for(make_user("nomad2")).get(reverse("pipeline_list")).content.decode()
    assert reverse("team_create") in pipelines


def test_admins_get_the_controls_others_a_read_only_list(db, team, alice, bob, vera):
    url = reverse("team_detail", args=[team.pk])
    admin_page = client_for(alice).get(url).content.decode()
    assert 'id="add-member"' in admin_page and 'name="role"' in admin_page and "Revoke" not in admin_page
    assert "Pending invitations" in admin_page
    for user in (bob, vera):
        page = client_for(user).get(url).content.decode()
        assert 'id="add-member"' not in page and 'name="role"' not in page and ">Remove<" not in page
        assert "alice" in page and "vera" in page and 'id="leave-team"' in page


def test_adding_a_member_by_username_on_the_page(db, team, alice):
    make_user("dora")
    client = client_for(alice)
    url = reverse("team_member_add", args=[team.pk])
    response = client.post(url, {"identifier": "dora", "role": "viewer"}, follow=True)
    assert "Added dora to Data Science as viewer" in response.content.decode()
    assert Membership.objects.get(user__username="dora").role == Role.VIEWER
    response = client.post(url, {"identifier": "dora", "role": "editor"})
    assert response.status_code == 400 and "dora is already a member" in response.content.decode()
    response = client.post(url, {"identifier": "dor", "role": "editor"})
    assert response.status_code == 400 and "No user is named" in response.content.decode()
    assert team.memberships.count() == 2


def test_an_invitation_link_is_shown_once_and_emailed(db, team, alice):
    client = client_for(alice)
    response = client.post(
        reverse("team_member_add", args=[team.pk]), {"identifier": "x@example.org", "role": "editor"}
    )
    assert response.status_code == 200
    [link] = LINK.findall(response.content.decode())
    assert link in mail.outbox[0].body
    page = client.get(reverse("team_detail", args=[team.pk])).content.decode()
    assert "x@example.org" in page and not LINK.findall(page)  # listed as pending, without its link


def test_revoking_an_invitation(db, team, alice, bob):
    token = token_of(invite(team, alice))
    url = reverse("team_invitation_revoke", args=[team.pk, Invitation.objects.get().pk])
    assert client_for(bob).post(url).status_code == 403
    assert client_for(alice).post(url).status_code == 302
    assert client_for(make_user("dana")).get(reverse("invitation_accept", args=[token])).status_code == 404


def test_changing_a_role_and_removing_a_member(db, team, alice, bob):
    membership = Membership.objects.get(user=bob)
    client = client_for(alice)
    client.post(reverse("team_member_role", args=[team.pk, membership.pk]), {"role": "viewer"})
    membership.refresh_from_db()
    assert membership.role == Role.VIEWER
    assert (
        client_for(bob).post(reverse("team_member_role", args=[team.pk, membership.pk]), {"role": "admin"}).status_code
        == 403
    )
    client.post(reverse("team_member_remove", args=[team.pk, membership.pk]))
    assert not Membership.objects.filter(pk=membership.pk).exists()


def test_the_last_admin_is_told_why_they_cannot_leave(db, team, alice, bob):
    client = client_for(alice)
    assert 'id="leave-team" disabled' in client.get(reverse("team_detail", args=[team.pk])).content.decode()
    response = client.post(reverse("team_leave", args=[team.pk]), follow=True)
    assert "alice is the last admin of Data Science" in response.content.decode()
    mine = Membership.objects.get(user=alice)
    response = client.post(reverse("team_member_role", args=[team.pk, mine.pk]), {"role": "viewer"}, follow=True)
    assert "last admin" in response.content.decode()
    assert Membership.objects.get(user=alice).role == Role.ADMIN
    # Another member leaves freely.
    assert client_for(bob).post(reverse("team_leave", args=[team.pk])).status_code == 302
    assert not Membership.objects.filter(user=bob).exists()


def test_the_invited_person_signs_up_and_lands_in_the_team(db, team, alice):
    token = token_of(invite(team, alice, role=Role.VIEWER))
    url = reverse("invitation_accept", args=[token])
    client = Client()
    page = client.get(url)
    assert page.status_code == 200 and 'id="sign-up"' in page.content.decode()
    short = client.post(url, {"username": "newbie", "password1": "short", "password2": "short"})
    assert short.status_code == 400 and "too short" in short.content.decode()
    assert not get_user_model().objects.filter(username="newbie").exists()
    data = {"username": "newbie", "password1": "a long passphrase", "password2": "a long passphrase"}
    response = client.post(url, data)
    assert response.status_code == 302 and response["Location"] == reverse("team_detail", args=[team.pk])
    user = get_user_model().objects.get(username="newbie")
    assert user.email == "new@example.com" and Membership.objects.get(user=user).role == Role.VIEWER
    assert client.get(reverse("team_detail", args=[team.pk])).status_code == 200  # signed in
    assert Client().get(url).status_code == 410


def test_a_signed_in_user_accepts_with_a_button(db, team, alice, charlie):
    token = token_of(invite(team, alice, role=Role.EDITOR))
    client = client_for(charlie)
    url = reverse("invitation_accept", args=[token])
    assert 'id="accept-invitation"' in client.get(url).content.decode()
    assert Membership.objects.filter(user=charlie, team=team).count() == 0
    assert client.post(url).status_code == 302
    assert Membership.objects.get(user=charlie, team=team).role == Role.EDITOR


@pytest.mark.parametrize(("state", "status"), [("unknown", 404), ("expired", 410), ("used", 410)])
def test_an_invitation_that_cannot_be_used_says_why(db, team, alice, state, status):
    token = token_of(invite(team, alice))
    if state == "unknown":
        token = "x" + token
    elif state == "expired":
        Invitation.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    else:
        teams.invitation_accept(token=token, user=make_user("dana"))
    for method in ("get", "post"):
        response = getattr(Client(), method)(reverse("invitation_accept", args=[token]), {"username": "z"})
        assert response.status_code == status
    assert not get_user_model().objects.filter(username="z").exists()


# ---- creating in a team: only where the user edits -----------------------------------------


def test_new_pipelines_go_only_to_teams_where_the_user_edits(db, team, other_team, alice, charlie):
    both = make_user("mixed", team, Role.VIEWER)
    Membership.objects.create(team=other_team, user=both, role=Role.EDITOR)
    client = client_for(both)
    for name in ("pipeline_create", "pipeline_import"):
        form = client.get(reverse(name)).context["form"]
        assert list(form.fields["team"].queryset) == [other_team]
    response = client.post(reverse("pipeline_create"), {"team": team.pk, "name": "planted"})
    assert response.status_code == 403
    assert not Pipeline.objects.filter(name="planted").exists()


def test_a_viewer_only_user_sees_why_they_cannot_create(db, team, alice, vera):
    page = client_for(vera).get(reverse("pipeline_create")).content.decode()
    assert "You need the editor or admin role in a team to create pipelines." in page
    listing = client_for(vera).get(reverse("pipeline_list")).content.decode()
    assert "New pipeline" not in listing


# ---- deleting a pipeline ---------------------------------------------------------------------


@pytest.fixture
def finished_run(team, alice):
    pipeline = make_pipeline(team, alice)
    run = make_run(pipeline, alice)
    Run.objects.filter(pk=run.pk).update(state=RunState.SUCCEEDED)
    return run


def test_the_delete_button_shows_for_admins_only(db, team, alice, bob, vera, finished_run):
    url = reverse("pipeline_detail", args=[finished_run.pipeline_id])
    assert 'id="delete-pipeline"' in client_for(alice).get(url).content.decode()
    for user in (bob, vera):
        assert 'id="delete-pipeline"' not in client_for(user).get(url).content.decode()
    # The viewer sees no Run button either; the editor does.
    assert 'id="run-button"' not in client_for(vera).get(url).content.decode()
    assert 'id="run-button"' in client_for(bob).get(url).content.decode()


def test_an_admin_deletes_a_pipeline_with_its_versions_and_runs(db, team, alice, bob, finished_run):
    pipeline = finished_run.pipeline
    url = reverse("pipeline_delete", args=[pipeline.pk])
    assert client_for(bob).post(url).status_code == 403
    confirm = client_for(alice).get(url).content.decode()
    assert "1 version" in confirm and "1 run" in confirm
    response = client_for(alice).post(url)
    assert response.status_code == 302 and response["Location"] == reverse("pipeline_list")
    assert not Pipeline.objects.filter(pk=pipeline.pk).exists()
    assert not PipelineVersion.objects.exists() and not Run.objects.exists() and not StepRun.objects.exists()


def test_a_pipeline_with_an_active_run_is_not_deleted(db, team, alice):
    pipeline = make_pipeline(team, alice)
    make_run(pipeline, alice)  # queued
    response = client_for(alice).post(reverse("pipeline_delete", args=[pipeline.pk]))
    assert response.status_code == 409
    assert "still queued or running" in response.content.decode()
    assert Pipeline.objects.filter(pk=pipeline.pk).exists() and Run.objects.count() == 1
    with pytest.raises(deletion.PipelineDeleteError, match="cancel it"):
        deletion.pipeline_delete(pipeline=pipeline)


def test_deleting_a_published_pipeline_deletes_its_template_and_keeps_the_clones(db, team, alice, finished_run):
    from pipelines_ui.models import Template, TemplateVersion

    pipeline = finished_run.pipeline
    template = Template.objects.create(team=team, pipeline=pipeline, title="Demo template")
    published = TemplateVersion.objects.create(template=template, number=1, pipeline_version=pipeline.latest_version)
    clone = make_pipeline(team, alice, name="my copy")
    Pipeline.objects.filter(pk=clone.pk).update(origin=published)
    confirm = client_for(alice).get(reverse("pipeline_delete", args=[pipeline.pk])).content.decode()
    assert "Demo template" in confirm and "1 pipeline made from it" in confirm
    assert client_for(alice).post(reverse("pipeline_delete", args=[pipeline.pk])).status_code == 302
    assert not Template.objects.exists()
    clone.refresh_from_db()
    assert clone.origin is None


@pytest.mark.django_db(transaction=True)
def test_two_admins_demoting_each_other_at_once_leave_one_admin(monkeypatch):
    """The team's row lock serializes member changes: the second waits, then sees one admin left."""
    import threading

    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL (select_for_update does nothing on SQLite)")
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    team = Team.objects.create(name="Pair")
    ann = Membership.objects.create(team=team, user=make_user("ann"), role=Role.ADMIN)
    ben = Membership.objects.create(team=team, user=make_user("ben"), role=Role.ADMIN)
    checked, release = threading.Event(), threading.Event()
    real_check = teams._other_admins

    def slow_first_check(team, membership):
        answer = real_check(team, membership)
        if threading.current_thread().name == "first":
            checked.set()
            release.wait(30)
        return answer

    monkeypatch.setattr(teams, "_other_admins", slow_first_check)
    outcomes: dict[str, str] = {}

    def demote(name: str, membership: Membership) -> None:
        try:
            teams.member_change_role(membership=membership, role=Role.VIEWER)
            outcomes[name] = "demoted"
        except teams.TeamError:
            outcomes[name] = "refused"
        finally:
            connection.close()

    first = threading.Thread(target=demote, args=("first", ann), name="first")
    second = threading.Thread(target=demote, args=("second", ben), name="second")
    first.start()
    assert checked.wait(30)
    second.start()
    # The second waits for the first's lock on the team row (PostgreSQL says so), then goes on.
    deadline = timezone.now() + timedelta(seconds=30)
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0] >= 1:
                break
            assert timezone.now() < deadline, "the second change never waited for the first"
    release.set()
    first.join(30)
    second.join(30)
    assert outcomes == {"first": "demoted", "second": "refused"}
    assert list(team.memberships.filter(role=Role.ADMIN).values_list("user__username", flat=True)) == ["ben"]


def test_deleting_a_pipeline_takes_its_endpoints_along(db, team, alice, finished_run):
    from pipelines_ui.api import endpoints
    from pipelines_ui.api.models import Endpoint

    pipeline = finished_run.pipeline
    endpoints.endpoint_create(team=team, name="demo", pipeline=pipeline, user=alice)
    confirm = client_for(alice).get(reverse("pipeline_delete", args=[pipeline.pk])).content.decode()
    assert "1 endpoint" in confirm and "1 run with its steps" in confirm
    assert client_for(alice).post(reverse("pipeline_delete", args=[pipeline.pk])).status_code == 302
    assert not Endpoint.objects.exists() and not Pipeline.objects.filter(pk=pipeline.pk).exists()


# ---- team secrets on the team page -------------------------------------------------------------

TOKEN = "ghp_s3cr3t-T0ken/with+chars&<>"
PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nAAAABG5vbmUAAAAEbm9uZQ==\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


def secret_url(team) -> str:
    return reverse("team_secret_set", args=[team.pk])


def delete_url(team, name: str) -> str:
    return reverse("team_secret_delete", args=[team.pk, name])


def stored_value(team, name: str) -> str | None:
    return team_secrets.secret_values(team, [name]).get(name)


def assert_hidden(body: str, *values: str) -> None:
    """Neither a value nor its escaped form nor a stored token reaches the page."""
    for value in values:
        assert value not in body and escape(value) not in body
    for token in TeamSecret.objects.values_list("value", flat=True):
        assert token not in body


def test_an_admin_adds_replaces_and_deletes_a_secret(db, team, alice):
    client = client_for(alice)
    added = client.post(secret_url(team), {"name": "registry_token", "value": TOKEN}, follow=True)
    page = added.content.decode()
    assert added.redirect_chain == [(reverse("team_detail", args=[team.pk]), 302)]
    assert "Added secret registry_token." in page and "<code>registry_token</code>" in page
    assert_hidden(page, TOKEN)
    secret = TeamSecret.objects.get(team=team)
    assert secret.updated_by == alice and stored_value(team, "registry_token") == TOKEN

    replaced = client.post(secret_url(team), {"name": "registry_token", "value": "rotated-" + TOKEN}, follow=True)
    assert "Replaced secret registry_token." in replaced.content.decode()
    assert_hidden(replaced.content.decode(), TOKEN, "rotated-" + TOKEN)
    assert TeamSecret.objects.filter(team=team).count() == 1
    assert stored_value(team, "registry_token") == "rotated-" + TOKEN

    deleted = client.post(delete_url(team, "registry_token"), follow=True)
    page = deleted.content.decode()
    assert "Deleted secret registry_token." in page and 'id="no-secrets"' in page
    assert not TeamSecret.objects.exists()


def test_the_secret_views_keep_the_value_out_of_error_reports(db, team, alice):
    response = client_for(alice).post(secret_url(team), {"name": "registry_token", "value": TOKEN})
    assert list(response.wsgi_request.sensitive_post_parameters) == ["value"]


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        (f"  {TOKEN} \r\n", TOKEN),  # a pasted token's stray space and line break go
        (PEM.replace("\n", "\r\n"), PEM),  # a key keeps its lines and its final newline, as LF
    ],
)
def test_a_typed_value_is_kept_as_meant(db, team, alice, typed, kept):
    client_for(alice).post(secret_url(team), {"name": "deploy_key", "value": typed})
    assert stored_value(team, "deploy_key") == kept


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": "1abc"}, "name", "Letters, digits and underscores, not starting with a digit"),
        ({"name": "a-b"}, "name", "Letters, digits and underscores, not starting with a digit"),
        ({"name": ""}, "name", "A name is required"),
        ({"name": "x" * 101}, "name", "at most 100 characters"),
        ({"value": ""}, "value", "A value is required"),
        ({"value": " \r\n "}, "value", "A value is required"),
        ({"value": "a\x00b"}, "value", "Null characters are not allowed"),
    ],
)
def test_a_bad_name_or_value_is_shown_on_its_field_and_nothing_is_saved(db, team, alice, data, field, message):
    posted = {"name": "registry_token", "value": TOKEN, **data}
    response = client_for(alice).post(secret_url(team), posted)
    assert response.status_code == 400
    errors = response.context["secret_form"].errors
    assert list(errors) == [field] and message in errors[field][0]
    page = response.content.decode()
    assert message in page and 'id="secret-form"' in page
    assert_hidden(page, TOKEN)  # not even back in the textarea
    assert ('id="secret-value-again"' in page) == (field == "name")  # so the admin pastes it again
    assert not TeamSecret.objects.exists()


def test_members_see_the_names_and_who_set_them_never_the_values(db, team, alice, bob, vera):
    team_secrets.secret_set(team=team, name="registry_token", value=TOKEN, by=alice)
    url = reverse("team_detail", args=[team.pk])
    admin_page = client_for(alice).get(url).content.decode()
    assert 'id="secret-form"' in admin_page and delete_url(team, "registry_token") in admin_page
    assert 'autocomplete="off"' in admin_page and 'spellcheck="false"' in admin_page
    for user in (bob, vera):
        page = client_for(user).get(url).content.decode()
        assert "<code>registry_token</code>" in page and "alice" in page
        assert 'id="secret-form"' not in page and "team_secret_delete" not in page
        assert delete_url(team, "registry_token") not in page
        assert_hidden(page, TOKEN)
    assert_hidden(admin_page, TOKEN)


def test_the_empty_secrets_card_says_what_to_do(db, team, alice, vera):
    url = reverse("team_detail", args=[team.pk])
    admin_page = client_for(alice).get(url).content.decode()
    assert "No secrets yet. Add one below" in admin_page and "type: secret" in admin_page
    assert "Ask an admin of the team" in client_for(vera).get(url).content.decode()


def test_viewers_and_editors_cannot_set_or_delete_secrets(db, team, alice, bob, vera):
    team_secrets.secret_set(team=team, name="registry_token", value=TOKEN, by=alice)
    for user in (bob, vera):
        client = client_for(user)
        refused = client.post(secret_url(team), {"name": "registry_token", "value": "planted"})
        assert refused.status_code == 403 and "Your role does not let you" in refused.content.decode()
        assert client.post(secret_url(team), {"name": "other", "value": "planted"}).status_code == 403
        assert client.post(delete_url(team, "registry_token")).status_code == 403
    assert list(TeamSecret.objects.values_list("name", flat=True)) == ["registry_token"]
    assert stored_value(team, "registry_token") == TOKEN


def test_outsiders_get_404_and_the_urls_take_only_post(db, team, alice, charlie):
    team_secrets.secret_set(team=team, name="registry_token", value=TOKEN, by=alice)
    outsider = client_for(charlie)
    assert outsider.post(secret_url(team), {"name": "planted", "value": "x"}).status_code == 404
    assert outsider.post(delete_url(team, "registry_token")).status_code == 404
    assert list(TeamSecret.objects.values_list("name", flat=True)) == ["registry_token"]
    for url in (secret_url(team), delete_url(team, "registry_token")):
        assert client_for(alice).get(url).status_code == 405


def test_another_teams_secret_cannot_be_deleted_through_my_team(db, team, other_team, alice, charlie):
    theirs, _ = team_secrets.secret_set(team=other_team, name="deploy_key", value=PEM, by=charlie)
    client = client_for(alice)
    # By its name under my team's URL, and by my team's URL with its id as the name.
    for name in ("deploy_key", str(theirs.pk)):
        assert client.post(delete_url(team, name)).status_code == 404
    assert client.post(delete_url(other_team, "deploy_key")).status_code == 404  # not my team
    assert TeamSecret.objects.get() == theirs


# ---- the run page: which secret inputs came from the team --------------------------------------

SECRET_INPUTS_YAML = """
type: pipeline
inputs:
  registry_token: {type: secret}
  api_key: {type: secret}
jobs:
  push:
    type: command
    command: push --token ${{inputs.t}} --key ${{inputs.k}}
    inputs:
      t: ${{parent.inputs.registry_token}}
      k: ${{parent.inputs.api_key}}
"""


def test_the_run_page_marks_the_secret_inputs_that_came_from_the_team(db, team, alice):
    team_secrets.secret_set(team=team, name="registry_token", value=TOKEN, by=alice)
    pipeline = make_pipeline(team, alice, name="pusher", yaml_text=SECRET_INPUTS_YAML)
    run = make_run(pipeline, alice, api_key="typed-in-key")
    assert run.team_secrets == ["registry_token"]
    client = client_for(alice)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    header = client.get(reverse("run_parts", args=[run.pk])).json()["parts"]["header"]
    for body in (page, header):  # the page, and the part that refreshes it
        from_team = re.search(r'data-secret-input="registry_token">(.*?)</span></span>', body)
        typed = re.search(r'data-secret-input="api_key">(.*?)</span>', body)
        assert from_team and "registry_token=***" in from_team[1] and "team secret" in from_team[1]
        assert typed and "api_key=***" in typed[1] and "team secret" not in typed[1]
        assert_hidden(body, TOKEN, "typed-in-key")
