"""Fixtures for the REST API: alice's team with a pipeline, tokens, a client that sends them."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from pipelines_ui.api.tokens import token_create
from tests.conftest import make_user
from tests.runs.conftest import make_pipeline


@pytest.fixture(autouse=True)
def artifact_store(settings, tmp_path):
    settings.STEPWISE_ARTIFACTS = str(tmp_path / "artifacts")
    settings.STEPWISE_WORKDIR = tmp_path / "work"


@pytest.fixture
def pipeline(alice, team):
    return make_pipeline(team, alice)


@pytest.fixture
def viewer(team):
    return make_user("vera", team, "viewer")


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def token_for(user, *scopes, team=None, expires_days=None) -> str:
    return token_create(
        user=user, name="test", scopes=list(scopes) or ["read"], team=team, expires_days=expires_days
    ).secret
