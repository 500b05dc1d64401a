"""Deployments with real scorer processes under the real deployer loop: scoring, bad rows, and a
swap of model versions while requests keep coming, none of them failing."""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
import threading
import time

import joblib
import numpy as np
import pytest
from django.test import Client
from sklearn.dummy import DummyClassifier

from pipelines_ui.api.tokens import token_create
from pipelines_ui.models import Role
from runs.registry import deployments, scoring_proxy, services
from runs.registry.models import Deployment, ScoringRequest
from tests.conftest import database_url, make_user
from tests.integration.conftest import ROOT, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def constant_model(tmp_path, value: int):
    model = DummyClassifier(strategy="constant", constant=value).fit(np.array([[0.0, 0.0], [1.0, 1.0]]), [0, 1])
    folder = tmp_path / f"model-{value}"
    folder.mkdir()
    joblib.dump(model, folder / "model.joblib")
    return folder


@pytest.fixture
def deployer(settings, tmp_path):
    """`manage.py stepwise_deployments` as serve starts it, on the test database."""
    env = dict(
        os.environ,
        DATABASE_URL=database_url(),
        STEPWISE_ARTIFACTS=str(settings.STEPWISE_ARTIFACTS),
        STEPWISE_WORKDIR=str(settings.STEPWISE_WORKDIR),
        STEPWISE_VAR=str(tmp_path / "var"),
    )
    log = open(tmp_path / "deployer.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "stepwise_deployments"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    yield proc
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


@pytest.fixture
def setup(team, alice, tmp_path):
    v1 = services.model_create_from_path(team=team, name="clf", path=constant_model(tmp_path, 0), user=alice)
    v2 = services.model_create_from_path(team=team, name="clf", path=constant_model(tmp_path, 1), user=alice)
    deployment = deployments.deployment_create(team=team, name="digits", model_version=v1, user=alice)
    client = Client()
    token = token_create(user=alice, name="scoring", scopes=["run"]).secret
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return deployment, v1, v2, client


def score(client, body, team="Data Science", name="digits"):
    return client.post(f"/api/v1/deployments/{team}/{name}/score", body, content_type="application/json")


def serving(deployment: Deployment, version) -> bool:
    deployment.refresh_from_db()
    return deployment.serving_version_id == version.pk and bool(deployment.address)


def test_scoring_and_bad_rows(deployer, setup, tmp_path):
    deployment, v1, _v2, client = setup
    wait_for(
        lambda: serving(deployment, v1), message="the scorer", details=lambda: (tmp_path / "deployer.log").read_text()
    )
    ok = score(client, {"rows": [{"a": 1, "b": 2}, {"a": 0.5, "b": 0}]})
    assert ok.status_code == 200, ok.content
    assert ok.json()["predictions"] == [0, 0] and ok.json()["model"] == "clf:1"
    assert score(client, {"inputs": [[1, 2]]}).json()["predictions"] == [0]
    missing = score(client, {"rows": [{"a": 1, "b": 2}, {"a": 1}]})
    assert missing.status_code == 400 and missing.json()["errors"][0]["field"] == "rows[1].b"
    text = score(client, {"rows": [{"a": 1, "b": "seven"}]})
    assert (
        text.status_code == 400
        and "rows[0].b" in text.json()["detail"]
        and "expected a number" in text.json()["detail"]
    )
    width = score(client, {"inputs": [[1, 2, 3]]})
    assert width.status_code == 400 and "inputs[0]: expected 2 values, got 3" in width.json()["detail"]
    assert score(client, {"neither": 1}).status_code == 400
    log = list(ScoringRequest.objects.filter(deployment=deployment).order_by("id").values_list("status", "rows"))
    assert log == [(200, 2), (200, 1), (400, 2), (400, 1), (400, 1), (400, 0)]


def test_a_swap_under_load_fails_no_request(deployer, setup, tmp_path):
    deployment, v1, v2, client = setup
    wait_for(
        lambda: serving(deployment, v1), message="the scorer", details=lambda: (tmp_path / "deployer.log").read_text()
    )
    answers = []
    for i in range(200):
        if i == 50:
            deployments.deployment_swap(deployment=deployment, model_version=v2)
        if i == 150:
            # The loop goes on while the new scorer starts; it must have taken over by now.
            wait_for(lambda: serving(deployment, v2), message="the swap")
        response = score(client, {"rows": [{"a": i, "b": 1}]})
        assert response.status_code == 200, (i, response.content)
        answers.append(response.json()["predictions"][0])
    switched = answers.index(1)
    assert 50 <= switched <= 150 and answers == [0] * switched + [1] * (200 - switched)
    assert ScoringRequest.objects.filter(deployment=deployment).count() == 200
    assert ScoringRequest.objects.filter(deployment=deployment, status=200).count() == 200
    assert set(ScoringRequest.objects.values_list("model_version_id", flat=True)) == {v1.pk, v2.pk}
    # Roll back: the first version answers again.
    deployments.deployment_rollback(deployment=deployment)
    wait_for(lambda: serving(deployment, v1), message="the roll back")
    assert score(client, {"rows": [{"a": 1, "b": 1}]}).json()["predictions"] == [0]


def test_access_needs_the_run_scope_and_the_team(deployer, setup, team, alice, charlie):
    deployment, *_ = setup
    reader = Client()
    reader.defaults["HTTP_AUTHORIZATION"] = f"Bearer {token_create(user=alice, name='r', scopes=['read']).secret}"
    assert score(reader, {"inputs": [[1, 2]]}).status_code == 403
    viewer = make_user("vera", team, Role.VIEWER)
    as_viewer = Client()
    as_viewer.defaults["HTTP_AUTHORIZATION"] = f"Bearer {token_create(user=viewer, name='v', scopes=['run']).secret}"
    assert score(as_viewer, {"inputs": [[1, 2]]}).status_code == 403
    outsider = Client()
    outsider.defaults["HTTP_AUTHORIZATION"] = f"Bearer {token_create(user=charlie, name='c', scopes=['run']).secret}"
    assert score(outsider, {"inputs": [[1, 2]]}).status_code == 404
    assert (
        Client().post("/api/v1/deployments/Data Science/digits/score", {}, content_type="application/json").status_code
        == 401
    )
    assert not ScoringRequest.objects.exists()


def test_a_version_that_cannot_load_leaves_the_old_one_serving(team, alice, tmp_path):
    from runs.registry.deployer import Deployer

    good = services.model_create_from_path(team=team, name="clf", path=constant_model(tmp_path, 0), user=alice)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.pkl").write_bytes(b"not a pickle")
    bad = services.model_create_from_path(team=team, name="clf", path=tmp_path / "bad", user=alice)
    deployment = deployments.deployment_create(team=team, name="digits", model_version=good, user=alice)
    deployer = Deployer(run_dir=tmp_path / "run")
    try:
        wait_for(lambda: deployer.tick() is not None and serving(deployment, good), message="the first scorer")
        address = deployment.address
        deployments.deployment_swap(deployment=deployment, model_version=bad)

        def failed() -> bool:
            deployer.tick()
            deployment.refresh_from_db()
            return bool(deployment.error)

        wait_for(failed, message="the bad version's scorer to fail")
        assert "clf:2" in deployment.error and "cannot load the model" in deployment.error
        assert (deployment.address, deployment.serving_version) == (address, good)
        status, answer = scoring_proxy.score(deployment=deployment, payload={"inputs": [[1, 2]]})
        assert (status, answer["model"]) == (200, "clf:1")
    finally:
        deployer.stop_all()


# Variables of the server's that a scorer must not get (its database, its keys, its stores).
SERVER_PREFIXES = ("DATABASE", "DJANGO", "STEPWISE", "SECRET", "REDIS", "AWS")
REDIS_PORT = 6379


class Probe:
    """A pickle that runs its author's code when loaded, as any pickle may: it becomes a model
    whose predictions say what the scorer's process can see and reach."""

    def __init__(self, secret_file: str) -> None:
        self.secret_file = secret_file

    def __reduce__(self):
        checks = [
            "str(os.getuid())",
            f'",".join(sorted(k for k in os.environ if k.startswith({SERVER_PREFIXES!r}))) or "-"',
            f'(lambda s: (s.settimeout(1), s.connect_ex(("127.0.0.1", {REDIS_PORT}))))(socket.socket())[1]',
            f"os.access({self.secret_file!r}, os.R_OK)",
            f"os.path.exists({str(ROOT / 'manage.py')!r})",
        ]
        model = f'type("Probe", (), {{"predict": lambda self, X: [{", ".join(checks)}]}})()'
        return (eval, (f'(lambda os, socket: {model})(__import__("os"), __import__("socket"))',))


def test_a_scorer_cannot_reach_the_servers_settings_files_or_network(deployer, team, alice, tmp_path, settings):
    # The server's own secret, readable by the deployer: the scorer must not read it.
    secret = tmp_path / "var" / "server-secret"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text("the database password")
    folder = tmp_path / "probe"
    folder.mkdir()
    joblib.dump(Probe(str(secret)), folder / "model.pkl")
    version = services.model_create_from_path(team=team, name="probe", path=folder, user=alice)
    deployment = deployments.deployment_create(team=team, name="probe", model_version=version, user=alice)
    wait_for(
        lambda: serving(deployment, version),
        message="the probe's scorer",
        details=lambda: (tmp_path / "deployer.log").read_text(),
    )
    status, answer = scoring_proxy.score(deployment=deployment, payload={"inputs": [[0]]})
    assert status == 200, answer
    uid, variables, redis, reads_secret, sees_code = answer["predictions"]
    if os.geteuid() == 0:
        assert uid == str(settings.STEPWISE_SANDBOX_UID), "a root deployer's scorer runs as the sandbox's uid"
    assert variables == "-", f"the server's settings reached the scorer: {variables}"
    assert redis != 0, "the scorer reached Redis on the host's loopback"
    assert reads_secret is False and sees_code is False


def test_where_steps_run_unconfined_a_scorer_does_too_but_without_the_servers_settings(team, alice, tmp_path):
    from runs.models import ComputeTarget, Isolation
    from runs.registry.deployer import Deployer

    ComputeTarget.objects.update(is_default=False)
    ComputeTarget.objects.create(name="bare", queue="bare", is_default=True, isolation=Isolation.NONE)
    folder = tmp_path / "probe"
    folder.mkdir()
    joblib.dump(Probe(str(tmp_path / "nothing")), folder / "model.pkl")
    version = services.model_create_from_path(team=team, name="probe", path=folder, user=alice)
    deployment = deployments.deployment_create(team=team, name="probe", model_version=version, user=alice)
    deployer = Deployer(run_dir=tmp_path / "run")
    try:
        wait_for(lambda: deployer.tick() is not None and serving(deployment, version), message="the scorer")
        assert deployment.address.startswith("unix:/")
        status, answer = scoring_proxy.score(deployment=deployment, payload={"inputs": [[0]]})
        assert status == 200, answer
        uid, variables, _redis, _reads, _sees = answer["predictions"]
        assert uid == str(os.getuid()) and variables == "-"
    finally:
        deployer.stop_all()
    assert not any((tmp_path / "run").glob("*/scorer.sock")), "a stopped scorer's folder is removed"


class Stuck:
    """A model whose every prediction hangs: its scorer cannot finish draining."""

    def __reduce__(self):
        model = 'type("Stuck", (), {"predict": lambda self, X: __import__("time").sleep(3600)})()'
        return (eval, (model,))


def test_a_scorer_that_does_not_drain_is_killed(team, alice, tmp_path, monkeypatch):
    from runs.registry import deployer as deployer_module

    monkeypatch.setattr(deployer_module, "KILL_AFTER_S", 1.0)
    folder = tmp_path / "stuck"
    folder.mkdir()
    joblib.dump(Stuck(), folder / "model.pkl")
    version = services.model_create_from_path(team=team, name="stuck", path=folder, user=alice)
    deployment = deployments.deployment_create(team=team, name="stuck", model_version=version, user=alice)
    deployer = deployer_module.Deployer(run_dir=tmp_path / "run")
    try:
        wait_for(lambda: deployer.tick() is not None and serving(deployment, version), message="the scorer")
        (scorer,) = deployer.scorers

        # A request the model never answers holds the scorer's drain open (until it is killed).
        def hang() -> None:
            with contextlib.suppress(OSError, http.client.HTTPException):
                scoring_proxy._post(deployment.address, b'{"inputs": [[0]]}')

        threading.Thread(target=hang, daemon=True).start()
        time.sleep(0.5)
        deployment.delete()  # its scorer is told to drain at the next tick
        said: list[str] = []
        wait_for(lambda: said.extend(deployer.tick()) or not scorer.alive(), timeout=30, message="the kill")
        assert any("draining" in line for line in said) and any("did not drain" in line for line in said)
        wait_for(lambda: deployer.tick() is not None and not deployer.scorers, message="the reap")
    finally:
        deployer.stop_all()
