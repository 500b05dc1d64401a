"""The client's configuration and errors, without a server (the rest: tests/integration/test_sdk_client.py)."""

from __future__ import annotations

import json
import stat

import pytest
import requests

from stepwise.client import (
    Client,
    Conflict,
    NotFound,
    StepwiseError,
    ValidationError,
    _error,
    config_path,
    write_config,
)


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("STEPWISE_URL", raising=False)
    monkeypatch.delenv("STEPWISE_TOKEN", raising=False)


def test_login_file_is_the_users_alone_and_read_last(monkeypatch):
    path = write_config(url="http://saved:8000/", token="swt_saved")
    assert path == config_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"url": "http://saved:8000", "token": "swt_saved"}

    saved = Client()
    assert (saved.url, saved.token) == ("http://saved:8000", "swt_saved")
    monkeypatch.setenv("STEPWISE_URL", "http://env:1")
    monkeypatch.setenv("STEPWISE_TOKEN", "swt_env")
    assert (Client().url, Client().token) == ("http://env:1", "swt_env")
    explicit = Client("http://arg:2/", "swt_arg")
    assert (explicit.url, explicit.token) == ("http://arg:2", "swt_arg")
    assert explicit.session.headers["Authorization"] == "Bearer swt_arg"


def test_no_server_configured_says_how_to_set_one():
    with pytest.raises(StepwiseError, match="STEPWISE_URL"):
        Client()


def test_an_unreachable_server_is_a_clear_error():
    client = Client("http://127.0.0.1:9", "swt_x", timeout=2)
    with pytest.raises(StepwiseError, match="cannot reach http://127.0.0.1:9") as info:
        client.teams()
    assert info.value.status == 0


def _response(status: int, body: object) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode() if body is not None else b"<html>oops</html>"
    response.url = "http://x/api/v1/pipelines/"
    response.request = requests.Request("POST", response.url).prepare()
    return response


def test_errors_carry_the_servers_problems():
    problem = {"file": "pipeline.yml", "job": "train", "field": "command", "line": 7, "message": "no input 'x'"}
    error = _error(_response(400, {"detail": "the pipeline is invalid", "errors": [problem]}))
    assert isinstance(error, ValidationError)
    assert (error.status, error.detail, error.errors) == (400, "the pipeline is invalid", [problem])
    assert str(error) == "the pipeline is invalid\n  pipeline.yml: job 'train': field 'command': no input 'x'"
    assert isinstance(_error(_response(404, {"detail": "No such run"})), NotFound)
    assert isinstance(_error(_response(409, {"detail": "already finished"})), Conflict)
    plain = _error(_response(502, None))
    assert type(plain) is StepwiseError and "HTTP 502" in str(plain)
