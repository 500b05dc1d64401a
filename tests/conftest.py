from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from pipelines_ui.models import Membership, Role, Team


@pytest.fixture
def team(db) -> Team:
    return Team.objects.create(name="Data Science")


@pytest.fixture
def other_team(db) -> Team:
    return Team.objects.create(name="Elsewhere")


def make_user(username: str, team: Team | None = None, role: str = Role.EDITOR):
    user = get_user_model().objects.create_user(username=username, password="pw-" + username)
    if team is not None:
        Membership.objects.create(team=team, user=user, role=role)
    return user


@pytest.fixture
def alice(team):
    """Owns the team's pipelines."""
    return make_user("alice", team, Role.ADMIN)


@pytest.fixture
def bob(team):
    """A member of alice's team."""
    return make_user("bob", team, Role.EDITOR)


@pytest.fixture
def charlie(other_team):
    """Outside alice's team."""
    return make_user("charlie", other_team, Role.ADMIN)
