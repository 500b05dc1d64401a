"""`serve` supervises the deployer, and through it the scorers: a killed deployer comes back with
its scorers, scoring works through the real web server, and stopping serve leaves no scorer."""

from __future__ import annotations

import json
import os
import signal
import threading
import urllib.request

import pytest

from pipelines_ui.api.tokens import token_create
from runs.registry import deployments, services
from runs.registry.models import Deployment, ScoringRequest
from tests.integration.conftest import wait_for
from tests.integration.test_deployments import constant_model
from tests.integration.test_serve import alive, cmdline, descendants, serve  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration


def score(base: str, token: str, team: str) -> dict:
    request = urllib.request.Request(
        f"{base}/api/v1/deployments/{urllib.request.quote(team)}/d/score",
        data=json.dumps({"inputs": [[1, 2]]}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_serve_keeps_the_scorers_running(serve, alice, team, tmp_path):  # noqa: F811
    served = serve(workers=0)
    v1 = services.model_create_from_path(team=team, name="clf", path=constant_model(tmp_path, 1), user=alice)
    deployment = deployments.deployment_create(team=team, name="d", model_version=v1, user=alice)
    token = token_create(user=alice, name="s", scopes=["run"]).secret

    def address() -> str:
        return Deployment.objects.get(pk=deployment.pk).address

    first = wait_for(address, timeout=60, message="the scorer", details=served.output)
    assert score(served.base, token, team.name)["predictions"] == [1]

    def deployer_pid() -> int | None:
        return next((p for p in descendants(served.proc.pid) if "stepwise_deployments" in cmdline(p)), None)

    def scorer_pids() -> set[int]:
        # The scorers' own Python processes, not the sandboxes (bwrap and its init) around them.
        found = {p for p in descendants(served.proc.pid) if "stepwise.scoring" in cmdline(p)}
        return {p for p in found if not cmdline(p)[0].endswith("bwrap")}

    old_deployer, old_scorers = deployer_pid(), scorer_pids()
    assert old_deployer and len(old_scorers) == 1
    os.kill(old_deployer, signal.SIGKILL)
    # The scorer dies with its deployer; serve restarts the deployer, which starts a new scorer.
    wait_for(lambda: not any(alive(p) for p in old_scorers), timeout=10, message="the orphaned scorer to end")
    wait_for(lambda: address() != first, timeout=60, message="a new scorer", details=served.output)
    assert deployer_pid() not in (None, old_deployer)
    assert score(served.base, token, team.name)["predictions"] == [1]

    # A swap under concurrent load through daphne: four clients never stop while the new scorer
    # starts, takes over and the old one drains and exits.
    v0 = services.model_create_from_path(team=team, name="clf", path=constant_model(tmp_path, 0), user=alice)
    old_scorers = scorer_pids()
    stop = threading.Event()
    answers: list[list[int]] = [[] for _ in range(4)]
    failures: list[str] = []

    def client(mine: list[int]) -> None:
        while not stop.is_set():
            try:
                mine.append(score(served.base, token, team.name)["predictions"][0])
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                failures.append(repr(exc))

    threads = [threading.Thread(target=client, args=(mine,)) for mine in answers]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: all(len(a) >= 5 for a in answers), timeout=30, message="the clients to score")
        deployments.deployment_swap(deployment=deployment, model_version=v0)
        wait_for(lambda: not any(alive(p) for p in old_scorers), timeout=60, message="the old scorer to drain")
        counts = [len(a) for a in answers]
        wait_for(lambda: all(len(a) >= c + 5 for a, c in zip(answers, counts, strict=True)), timeout=30)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert failures == []
    for mine in answers:
        switched = mine.index(0)
        assert mine == [1] * switched + [0] * (len(mine) - switched), "each client moves to the new version once"
    sent = sum(len(a) for a in answers)
    assert ScoringRequest.objects.filter(deployment=deployment, status=200).count() == sent + 2

    family = scorer_pids()
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=60) == 0, served.output()
    wait_for(lambda: not any(alive(p) for p in family), timeout=10, message="every scorer to end")
