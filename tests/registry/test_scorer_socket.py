"""A scorer process on its Unix socket, reached the way the deployer and the web view reach it,
from a folder whose path is longer than a socket's name may be; told to drain, it exits."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.dummy import DummyClassifier

from runs.registry import scorer_client
from runs.registry.scorer_client import SUN_PATH_MAX

ROOT = Path(__file__).resolve().parents[2]


def request(address: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    conn = scorer_client.connection(address, timeout=10)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def test_a_scorer_in_a_deep_folder_answers_on_its_socket_and_drains(tmp_path):
    folder = tmp_path.joinpath(*["a-rather-long-folder-name"] * 5)
    folder.mkdir(parents=True)
    model = DummyClassifier(strategy="constant", constant=1).fit(np.array([[0.0], [1.0]]), [0, 1])
    joblib.dump(model, tmp_path / "model.joblib")
    scorer = subprocess.Popen(
        [sys.executable, "-m", "stepwise.scoring", "--model", str(tmp_path / "model.joblib")]
        + ["--version-id", "7", "--socket", "scorer.sock", "--address-file", str(folder / "address")],
        cwd=folder,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    try:
        deadline = time.monotonic() + 30
        while not (folder / "address").exists():
            assert scorer.poll() is None and time.monotonic() < deadline, "the scorer did not start"
            time.sleep(0.05)
        address = (folder / "address").read_text()
        assert address == f"unix:{folder / 'scorer.sock'}"
        assert len(address.removeprefix("unix:").encode()) > SUN_PATH_MAX, "the test needs a path too long to bind"
        assert request(address, "GET", "/health") == (200, {"model": "model", "version_id": 7})
        status, answer = request(address, "POST", "/score", {"inputs": [[0.5]]})
        assert (status, answer["predictions"]) == (200, [1])
        assert request(address, "POST", "/drain")[0] == 202
        assert scorer.wait(timeout=10) == 0
        assert not (folder / "scorer.sock").exists(), "the socket goes with the scorer"
    finally:
        scorer.kill()
        scorer.wait()


def test_a_scorer_socket_replaced_by_a_link_is_not_followed(tmp_path):
    # A scorer's folder is its own (its model's pickle runs its author's code): it can replace its
    # socket by a link to another team's scorer's socket (or any socket of the host), which the
    # web process, outside the sandbox, would then send this deployment's requests to.
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    model = DummyClassifier(strategy="constant", constant=1).fit(np.array([[0.0], [1.0]]), [0, 1])
    joblib.dump(model, tmp_path / "model.joblib")
    scorer = subprocess.Popen(
        [sys.executable, "-m", "stepwise.scoring", "--model", str(tmp_path / "model.joblib")]
        + ["--version-id", "7", "--socket", "scorer.sock", "--address-file", str(theirs / "address")],
        cwd=theirs,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    try:
        deadline = time.monotonic() + 30
        while not (theirs / "address").exists():
            assert scorer.poll() is None and time.monotonic() < deadline, "the scorer did not start"
            time.sleep(0.05)
        assert request(f"unix:{theirs / 'scorer.sock'}", "GET", "/health")[0] == 200
        for mine in (tmp_path / "mine", tmp_path.joinpath(*["a-rather-long-folder-name"] * 5)):
            mine.mkdir(parents=True)
            (mine / "scorer.sock").symlink_to(theirs / "scorer.sock")
            with pytest.raises(OSError):
                request(f"unix:{mine / 'scorer.sock'}", "GET", "/health")
    finally:
        scorer.kill()
        scorer.wait()
