"""The team page in a real browser: an admin adds a member by username, changes a role and
invites an unknown email; the link is shown once; the invited person signs up through it and
lands in the team."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines_ui.models import Invitation, Membership, Role, Team, TeamSecret
from tests.browser.conftest import sign_in
from tests.conftest import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp")


def test_an_admin_manages_members_and_an_invited_person_joins(web, page, browser):
    team = Team.objects.create(name="Vision")
    make_user("alice", team, Role.ADMIN)
    make_user("dora")
    sign_in(page, web, "alice")

    page.click("nav >> text=Teams")
    page.click("#team-table >> text=Vision")
    page.wait_for_selector("#member-table")

    # Add by username: exact names only.
    page.fill("#add-member input[name=identifier]", "dor")
    page.click("#add-member button[type=submit]")
    assert "No user is named" in page.inner_text("#add-member")
    page.fill("#add-member input[name=identifier]", "dora")
    page.select_option("#add-member select[name=role]", "viewer")
    page.click("#add-member button[type=submit]")
    page.wait_for_selector("tr[data-member=dora]")
    assert "Added dora to Vision as viewer" in page.inner_text("main")

    # Change her role.
    row = page.locator("tr[data-member=dora]")
    row.locator("select[name=role]").select_option("editor")
    row.locator("button:has-text('Change')").click()
    page.wait_for_selector("text=dora is now editor")
    assert Membership.objects.get(user__username="dora").role == Role.EDITOR

    # Invite someone without an account: the link is shown once.
    page.fill("#add-member input[name=identifier]", "newbie@example.com")
    page.select_option("#add-member select[name=role]", "viewer")
    page.click("#add-member button[type=submit]")
    link = page.input_value("#invitation-link")
    assert link.startswith(web + "/invitations/")
    page.screenshot(path=str(SHOTS / "teams-invitation-link.png"), full_page=True)
    page.goto(web + f"/teams/{team.pk}/")
    assert page.locator("#invitation-link").count() == 0
    assert "newbie@example.com" in page.inner_text("#invitation-table")
    assert Invitation.objects.get().token_sha256 not in link

    # The invited person, in a browser of their own, signs up through the link.
    context = browser.new_context()
    guest = context.new_page()
    guest.goto(link)
    guest.screenshot(path=str(SHOTS / "teams-sign-up.png"), full_page=True)
    guest.fill("#sign-up input[name=username]", "newbie")
    guest.fill("#sign-up input[name=password1]", "a long passphrase")
    guest.fill("#sign-up input[name=password2]", "a long passphrase")
    guest.click("#sign-up button[type=submit]")
    guest.wait_for_selector("#member-table")
    assert guest.url == web + f"/teams/{team.pk}/"
    assert "Welcome to Vision: you are viewer" in guest.inner_text("main")
    assert 'id="add-member"' not in guest.content()  # a viewer sees the members, read-only
    guest.screenshot(path=str(SHOTS / "teams-member-view.png"), full_page=True)
    assert Membership.objects.get(user__username="newbie", team=team).role == Role.VIEWER

    # The link worked once.
    guest.goto(link)
    assert "already been used" in guest.inner_text("main")
    context.close()

    page.goto(web + f"/teams/{team.pk}/")
    page.screenshot(path=str(SHOTS / "teams-admin-view.png"), full_page=True)
    assert "newbie" in page.inner_text("#member-table")


def test_an_admin_adds_a_secret_that_the_page_lists_without_its_value(web, page):
    team = Team.objects.create(name="Vision")
    make_user("alice", team, Role.ADMIN)
    make_user("bob", team, Role.EDITOR)
    value = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    sign_in(page, web, "alice")
    page.goto(web + f"/teams/{team.pk}/")
    assert "Add one below" in page.inner_text("#no-secrets")

    # A bad name: the error shows on its field, and the value is not typed back.
    page.fill("#secret-form input[name=name]", "deploy-key")
    page.fill("#secret-form textarea[name=value]", value)
    page.click("#secret-form button[type=submit]")
    assert "Letters, digits and underscores" in page.inner_text("#secret-form")
    assert page.input_value("#secret-form textarea[name=value]") == ""
    assert "Paste the value again" in page.inner_text("#secret-form")
    assert "OPENSSH" not in page.content()
    page.screenshot(path=str(SHOTS / "team_secrets-error.png"), full_page=True)

    page.fill("#secret-form input[name=name]", "deploy_key")
    page.fill("#secret-form textarea[name=value]", value)
    page.click("#secret-form button[type=submit]")
    page.wait_for_selector("tr[data-secret=deploy_key]")
    assert "Added secret deploy_key." in page.inner_text("main")
    row = page.inner_text("tr[data-secret=deploy_key]")
    assert "deploy_key" in row and "alice" in row
    assert "OPENSSH" not in page.content() and page.input_value("#secret-form textarea[name=value]") == ""
    page.screenshot(path=str(SHOTS / "team_secrets.png"), full_page=True)
    assert TeamSecret.objects.get(team=team).name == "deploy_key"

    # Deleting asks first.
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("tr[data-secret=deploy_key] button:has-text('Delete')")
    page.wait_for_selector("#no-secrets")
    assert "Deleted secret deploy_key." in page.inner_text("main")
    assert not TeamSecret.objects.exists()
