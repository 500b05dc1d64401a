"""Every URL of the project, walked: anonymous users are sent to log in, outsiders get 404
(their objects do not exist for them), members get the page. A URL pattern with a parameter
this walk cannot fill in fails the walk, so new URLs are covered as they are added."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
from unittest import mock

import pytest
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse

from runs import artifacts
from runs.models import StepOutput, StepState
from tests.runs.conftest import make_pipeline, make_run, set_step

SECRET = "alice-secret-pipeline"
SKIPPED_PREFIXES = ("admin/",)
SKIPPED_NAMES = {"login", "logout"}
# Parameters the walk knows how to fill, from the objects of alice's team below.
PARAMETERS = {
    "pk": "pipeline",
    "pipeline_id": "pipeline",
    "run_id": "run",
    "number": "version",
    "name": "step",
    "step_name": "step",
    "output_name": "output",
}
# The same parameters, naming nothing that exists.
MISSING = {"pipeline": "987654", "version": "987", "run": "987654", "step": "no-such-step", "output": "no-such-output"}
_PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>\w+)>")


def walk(patterns, prefix: str = ""):
    """(route, pattern) for every leaf pattern, with its full route."""
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield route, pattern


def project_routes() -> list[tuple[str, str | None]]:
    routes = []
    for route, pattern in walk(get_resolver().url_patterns):
        if route.startswith(SKIPPED_PREFIXES) or pattern.name in SKIPPED_NAMES:
            continue
        routes.append((route, pattern.name))
    return routes


def websocket_routes() -> list[str]:
    from runs.routing import websocket_urlpatterns

    return [route for route, _pattern in walk(websocket_urlpatterns)]


ROUTES = project_routes()


def route_parameters(route: str) -> list[str]:
    if route.startswith("^") or "(?P<" in route:
        return ["<a regular expression: teach test_access.py to fill it in>"]
    return [m.group("name") for m in _PARAM.finditer(route)]


def fill(route: str, objects: dict[str, str]) -> str:
    return "/" + _PARAM.sub(lambda m: objects[PARAMETERS[m.group("name")]], route)


def test_every_url_pattern_can_be_filled_in():
    assert len(ROUTES) >= 20  # the walk reached the included URL confs
    unknown = {route: p for route, _ in ROUTES for p in route_parameters(route) if p not in PARAMETERS}
    unknown.update({route: p for route in websocket_routes() for p in route_parameters(route) if p not in PARAMETERS})
    assert not unknown, f"URL parameters the access walk cannot fill in (add them to PARAMETERS): {unknown}"


# ---- alice's objects ------------------------------------------------------------------------


@pytest.fixture
def objects(team, alice, tmp_path, settings) -> dict[str, str]:
    settings.STEPWISE_ARTIFACTS = str(tmp_path / "artifacts")
    settings.STEPWISE_WORKDIR = tmp_path / "work"
    pipeline = make_pipeline(team, alice, name=SECRET)
    run = make_run(pipeline, alice)
    step = set_step(run, "prep", state=StepState.SUCCEEDED, attempt=1)
    data = tmp_path / "data"
    data.mkdir()
    (data / "rows.csv").write_text("a,b\n1,2\n")
    StepOutput.objects.create(step_run=step, name="data", artifact=artifacts.store_output(data, "uri_folder"))
    return {
        "pipeline": str(pipeline.pk),
        "version": str(pipeline.latest_version.number),
        "run": str(run.pk),
        "step": "prep",
        "output": "data",
    }


def client_for(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def login_url() -> str:
    return reverse("login")


def refuses_anonymous(response) -> bool:
    if response.status_code in (401, 403):
        return True
    hops = [url for url, _status in getattr(response, "redirect_chain", [])]
    return bool(hops) and hops[-1].startswith(login_url())


def snapshot(team) -> dict:
    """What an outsider's request must never change."""
    from pipelines_ui.models import Pipeline, PipelineVersion
    from runs.models import Run, StepRun

    return {
        "pipelines": list(Pipeline.objects.filter(team=team).values_list("pk", "name", "latest_version_id")),
        "versions": PipelineVersion.objects.filter(pipeline__team=team).count(),
        "runs": list(Run.objects.filter(pipeline__team=team).values_list("pk", "state", "cancel_requested")),
        "steps": list(StepRun.objects.filter(run__pipeline__team=team).values_list("pk", "state")),
    }


@pytest.mark.parametrize(("route", "name"), ROUTES, ids=[r or "home" for r, _ in ROUTES])
def test_anonymous_users_are_sent_to_log_in(db, objects, route, name):
    url = fill(route, objects)
    client = client_for()
    for method in (client.get, client.post):
        response = method(url, follow=True)
        assert refuses_anonymous(response), (method.__name__, url, response.status_code)


@pytest.mark.parametrize(("route", "name"), ROUTES, ids=[r or "home" for r, _ in ROUTES])
def test_outsiders_get_404_and_change_nothing(db, objects, team, charlie, route, name):
    url = fill(route, objects)
    client = client_for(charlie)
    before = snapshot(team)
    has_object = bool(route_parameters(route))
    for method in (client.get, client.post):
        response = method(url)
        if has_object and response.status_code == 405:
            # A method the view never takes is refused before any lookup: the same answer as for
            # objects that do not exist, so it reveals nothing.
            assert method(fill(route, MISSING)).status_code == 405, (method.__name__, url)
        elif has_object:
            assert response.status_code == 404, (method.__name__, url, response.status_code)
        else:
            # Lists and forms: open to every user, but nothing of alice's team shows.
            assert response.status_code in (200, 302, 405), (method.__name__, url, response.status_code)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            assert SECRET.encode() not in body, (method.__name__, url)
    # Forms that take a team or a pipeline by id refuse alice's.
    client.post(url, {"team": team.pk, "name": "planted", "pipeline": objects["pipeline"]})
    assert snapshot(team) == before


@pytest.mark.parametrize(("route", "name"), ROUTES, ids=[r or "home" for r, _ in ROUTES])
def test_members_get_the_page(db, objects, alice, route, name):
    url = fill(route, objects)
    client = client_for(alice)
    # GET first: a POST may change (or delete) the objects the URL names.
    for method in (client.get, client.post):
        response = method(url)
        assert response.status_code not in (404, 500), (method.__name__, url, response.status_code)


# ---- artifact downloads: only the output the database names --------------------------------


@pytest.mark.parametrize(
    "tail",
    [
        "outputs/../../../../etc/passwd/",
        "outputs/%2e%2e/",
        "outputs/%2e%2e%2f%2e%2e%2fetc%2fpasswd/",
        "outputs/..%2F..%2Fartifacts/",
        "outputs/%2Fetc%2Fpasswd/",
        "outputs//etc/passwd/",
        "outputs/data%00/",
        "outputs/data%2F..%2F..%2F/",
        "outputs/%5C..%5C..%5Cetc%5Cpasswd/",
        "outputs/.%2e/",
        "../../outputs/data/",
    ],
)
def test_artifact_download_urls_with_traversal_are_404(db, objects, alice, tail):
    client = client_for(alice)
    good = f"/runs/{objects['run']}/steps/prep/outputs/data/"
    assert client.get(good).status_code == 200
    response = client.get(f"/runs/{objects['run']}/steps/prep/{tail}")
    assert response.status_code == 404, (tail, response.status_code)


@pytest.mark.parametrize("step", ["..", "%2e%2e", "..%2F..", "%2Fetc", "prep%00", "prep%2F..%2Fprep"])
def test_step_names_with_traversal_are_404(db, objects, alice, step):
    client = client_for(alice)
    for tail in ("log/", "outputs/data/", ""):
        response = client.get(f"/runs/{objects['run']}/steps/{step}/{tail}")
        assert response.status_code == 404, (step, tail, response.status_code)


def test_the_walk_reaches_the_download_view(db, objects):
    # Guard against the traversal tests passing only because the URL layout changed.
    assert resolve(f"/runs/{objects['run']}/steps/prep/outputs/data/").url_name == "step_output"


# ---- the websocket --------------------------------------------------------------------------

ORIGIN = (b"origin", b"http://testserver")


def run_async(coroutine_fn, *args):
    # A thread of its own: a sync Playwright test may have left an event loop in this one.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine_fn(*args)).result(timeout=60)


def session_headers(user) -> list[tuple[bytes, bytes]]:
    if user is None:
        return [ORIGIN]
    client = client_for(user)
    return [ORIGIN, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


async def try_connect(path: str, headers) -> bool:
    from pipelines_ui.asgi import application

    comm = WebsocketCommunicator(application, path, headers=headers)
    connected, _code = await comm.connect(timeout=5)
    await comm.disconnect()
    return connected


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", websocket_routes())
def test_websockets_refuse_anonymous_users_and_outsiders(team, alice, charlie, route, monkeypatch):
    # The consumer's database threads close their connections after each call, so that none
    # outlives the test (PostgreSQL refuses to drop a test database still in use).
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    # Committed for real (the consumer reads from other threads); the orchestrator stays idle.
    with mock.patch("runs.orchestrator.run_advance"):
        pipeline = make_pipeline(team, alice, name=SECRET)
        run = make_run(pipeline, alice)
    objects = {"pipeline": str(pipeline.pk), "run": str(run.pk), "version": "1", "step": "prep", "output": "data"}
    path = fill(route, objects)
    assert run_async(try_connect, path, session_headers(None)) is False
    assert run_async(try_connect, path, session_headers(charlie)) is False
    assert run_async(try_connect, path, session_headers(alice)) is True
