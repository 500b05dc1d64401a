"""Deployment services, the web side of scoring (retry across a swap) and the deployment page."""

from __future__ import annotations

import importlib.util
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.urls import reverse

from runs.data_assets import DataError
from runs.registry import deployments, scoring_proxy, services
from runs.registry.models import Deployment, ScoringRequest
from stepwise.scoring import Scorer, _handler

pytestmark = pytest.mark.django_db


class Doubler:
    n_features_in_ = 1

    def predict(self, matrix):
        return [row[0] * 2 for row in matrix]


def version(team, tmp_path: Path, name: str = "clf", flavour: str = "custom_model", content: str = "m"):
    path = tmp_path / f"{name}-{content}.pkl"
    path.write_text(content)
    return services.model_create_from_path(team=team, name=name, path=path, flavour=flavour)


@pytest.fixture
def scorer_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(Scorer(Doubler(), "clf:1", 0)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_mlflow_models_are_refused_when_mlflow_is_missing(team, tmp_path):
    if importlib.util.find_spec("mlflow") is not None:
        pytest.fail("this test expects mlflow not to be installed (requirements.txt does not pin it)")
    mlflow = version(team, tmp_path, flavour="mlflow_model")
    with pytest.raises(DataError, match="mlflow is not installed"):
        deployments.deployment_create(team=team, name="d", model_version=mlflow)
    assert not Deployment.objects.exists()


def test_swap_and_roll_back(team, other_team, tmp_path):
    v1, v2 = version(team, tmp_path, content="1"), version(team, tmp_path, content="2")
    other = version(team, tmp_path, name="other")
    d = deployments.deployment_create(team=team, name="d", model_version=v1)
    with pytest.raises(DataError, match="already has a deployment"):
        deployments.deployment_create(team=team, name="d", model_version=v1)
    with pytest.raises(DataError, match="another model's version"):
        deployments.deployment_swap(deployment=d, model_version=other)
    with pytest.raises(DataError, match="no other version"):
        deployments.deployment_rollback(deployment=d)
    deployments.deployment_swap(deployment=d, model_version=v2)
    d.refresh_from_db()
    assert (d.model_version, d.previous_version) == (v2, v1)
    deployments.deployment_rollback(deployment=d)
    d.refresh_from_db()
    assert (d.model_version, d.previous_version) == (v1, v2)
    with pytest.raises(DataError, match="is deployed"):
        services.model_version_delete(version=v2.__class__.objects.get(pk=v1.pk))


def test_stats_take_percentiles_of_answered_requests(team, tmp_path):
    d = deployments.deployment_create(team=team, name="d", model_version=version(team, tmp_path))
    for ms in range(1, 101):
        ScoringRequest.objects.create(deployment=d, status=200, latency_ms=float(ms))
    ScoringRequest.objects.create(deployment=d, status=400, latency_ms=5000.0)
    stats = deployments.deployment_stats(d)
    assert (stats["count"], stats["errors"], stats["p50"], stats["p95"]) == (101, 1, 50.0, 95.0)


def test_the_proxy_reads_the_address_again_when_the_old_scorer_has_gone(team, tmp_path, scorer_server, monkeypatch):
    d = deployments.deployment_create(team=team, name="d", model_version=version(team, tmp_path))
    Deployment.objects.filter(pk=d.pk).update(address=closed_port())
    # The deployer switches the address while the first attempt is refused.
    monkeypatch.setattr(
        scoring_proxy.time, "sleep", lambda s: Deployment.objects.filter(pk=d.pk).update(address=scorer_server)
    )
    status, answer = scoring_proxy.score(deployment=d, payload={"inputs": [[2], [5]]})
    assert (status, answer["predictions"]) == (200, [4.0, 10.0])
    logged = ScoringRequest.objects.get()
    assert (logged.status, logged.rows, logged.error) == (200, 2, "")


def test_without_a_scorer_the_answer_is_503_and_logged(team, tmp_path):
    d = deployments.deployment_create(team=team, name="d", model_version=version(team, tmp_path))
    status, answer = scoring_proxy.score(deployment=d, payload={"inputs": [[1]]})
    assert status == 503 and "not running yet" in answer["detail"]
    assert ScoringRequest.objects.get().status == 503


class DeepAnswer(BaseHTTPRequestHandler):
    """A scorer (any team's code) answering JSON nested deeper than Python's parser goes."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b"[" * 100_000 + b"]" * 100_000
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_a_scorer_answering_json_nested_too_deeply_is_a_502_not_a_crash(team, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), DeepAnswer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        d = deployments.deployment_create(team=team, name="d", model_version=version(team, tmp_path))
        Deployment.objects.filter(pk=d.pk).update(address=f"127.0.0.1:{server.server_address[1]}")
        status, answer = scoring_proxy.score(deployment=d, payload={"inputs": [[1]]})
    finally:
        server.shutdown()
        server.server_close()
    assert (status, answer["detail"]) == (502, "the scorer did not answer: RecursionError")
    assert ScoringRequest.objects.get().status == 502


def test_the_page_tests_the_deployment_and_escapes(client, alice, team, tmp_path, scorer_server):
    d = deployments.deployment_create(team=team, name="d", model_version=version(team, tmp_path))
    Deployment.objects.filter(pk=d.pk).update(address=scorer_server, error="<b>boom</b>")
    client.force_login(alice)
    page = client.post(reverse("deployment_test", args=[d.pk]), {"body": '{"inputs": [[21]]}'}).content.decode()
    assert 'id="test-result"' in page and "42.0" in page and "&lt;b&gt;boom" in page
    assert 'id="stat-count">1<' in page and "clf:1" in page
    bad = client.post(reverse("deployment_test", args=[d.pk]), {"body": "{not json"}).content.decode()
    assert "not JSON" in bad
    deep = client.post(reverse("deployment_test", args=[d.pk]), {"body": "[" * 50_000 + "]" * 50_000})
    assert deep.status_code == 200 and "nested too deeply" in deep.content.decode()  # was a 500
    for wrong in ("nope", "²", "9" * 40):
        swapped = client.post(reverse("deployment_swap", args=[d.pk]), {"version": wrong})
        assert swapped.status_code == 302 and "choose a version" in client.get(swapped["Location"]).content.decode()
    assert client.get(reverse("deployment_create") + "?version=²").status_code == 200


def test_a_deployment_whose_files_are_gone_is_reported_not_fatal(team, tmp_path):
    import shutil

    from runs import artifacts
    from runs.registry.deployer import Deployer

    broken = version(team, tmp_path)
    shutil.rmtree(artifacts.store().local_dir(broken.artifact.sha256))
    d = deployments.deployment_create(team=team, name="d", model_version=broken)
    did = Deployer(run_dir=tmp_path / "run").tick()
    d.refresh_from_db()
    assert did and d.error.startswith("clf:1: ") and not d.address


def test_a_scorer_cannot_hang_the_deployer_or_point_it_elsewhere_through_its_address_file(team, tmp_path, monkeypatch):
    """A scorer's folder is its own (a model's pickle runs its author's code): a FIFO as its
    address file would hang a deployer that read it, a link would name another address."""
    import os
    import subprocess

    from runs.registry import deployer as deployer_

    d = deployments.deployment_create(team=team, name="d", model_version=version(team, tmp_path))
    deployer = deployer_.Deployer(run_dir=tmp_path / "run")
    started = []

    def start(deployment):
        folder = deployer.run_dir / f"scorer-{len(started)}"
        folder.mkdir()
        os.mkfifo(folder / "address")
        proc = subprocess.Popen(["sleep", "30"])
        scorer = deployer_.ScorerProcess(deployment.pk, deployment.model_version_id, proc, folder, folder / "log")
        deployer.scorers.append(scorer)
        started.append(scorer)
        return scorer

    monkeypatch.setattr(deployer, "_start", start)
    hung = []

    def interrupt(signum, frame):
        hung.append(signum)
        raise TimeoutError("the deployer hangs on the scorer's FIFO")  # caught by tick, for one deployment

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        for _ in range(2):
            signal.alarm(5)
            deployer.tick()
            signal.alarm(0)
        assert not hung, "the deployer hung on the scorer's FIFO"
        assert len(started) == 1
        assert started[0].address == f"unix:{started[0].folder / deployer_.SOCKET_NAME}"
        d.refresh_from_db()
        assert not d.address  # nothing answers there: not switched to
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        for scorer in started:
            scorer.proc.kill()
            scorer.proc.wait()


def test_the_deploy_page_without_a_model_version_says_where_to_register_one(client, alice, team, tmp_path):
    client.force_login(alice)
    page = client.get(reverse("deployment_create")).content.decode()
    assert 'id="deployment-form"' not in page
    assert 'id="deployment-no-version"' in page and reverse("model_upload") in page
    version(team, tmp_path)
    page = client.get(reverse("deployment_create")).content.decode()
    assert 'id="deployment-form"' in page and 'id="deployment-no-version"' not in page


def test_a_scorer_log_is_read_from_its_end_only(tmp_path):
    """The scorer writes its log through the file it was given as stdout: seeking far ahead makes
    it sparse and as large as it likes (no disk), and the deployer reads its tail on every error."""
    import subprocess
    import tracemalloc

    from runs.registry import deployer as deployer_

    log_file = tmp_path / "scorer.log"
    with log_file.open("wb") as handle:
        handle.seek(64 * 1024 * 1024)
        handle.write(b"Traceback: the model would not load\n")
    proc = subprocess.Popen(["true"])
    proc.wait()
    scorer = deployer_.ScorerProcess(1, 1, proc, tmp_path, log_file)

    tracemalloc.start()
    try:
        tail = scorer.log_tail()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert tail.endswith("Traceback: the model would not load")
    assert peak < 1024 * 1024, f"the deployer read {peak} bytes of the scorer's log"
