"""Every URL of the project, walked: anonymous users are sent to log in, outsiders get 404
(their objects do not exist for them), members get the page; the admin (the RQ dashboard
with it) is for staff only; no state-changing request gets through without a CSRF token.
A URL pattern with a parameter this walk cannot fill in fails the walk, so new URLs are
covered as they are added."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django.utils import timezone

from pipelines_ui import teams
from pipelines_ui.api import notifications, schedules
from pipelines_ui.api.models import Delivery, Schedule
from pipelines_ui.models import Role, Team
from runs import artifacts, data_assets
from runs.data_assets import data_create_from_path
from runs.data_views import upload_begin
from runs.models import Run, StepOutput, StepState, Worker
from tests.conftest import built_once, make_user
from tests.runs.conftest import make_pipeline, make_run, set_step

SECRET = "alice-secret-pipeline"
# Walked below as staff-only instead (every pattern but the admin's own login page).
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
    "worker_id": "worker",
    "team_id": "team",
    "membership_id": "membership",
    "invitation_id": "invitation",
    "token": "token",
    "schedule_id": "schedule",
    "notification_id": "notification",
    "delivery_id": "delivery",
    "asset_id": "data_asset",
    "version": "data_version",
    "upload_id": "upload",
    "datastore_id": "datastore",
}
# The same parameters, naming nothing that exists.
MISSING = {
    "pipeline": "987654",
    "version": "987",
    "run": "987654",
    "step": "no-such-step",
    "output": "no-such-output",
    "worker": "987654",
    "team": "987654",
    "membership": "987654",
    "invitation": "987654",
    "token": "no-such-token",
    "schedule": "987654",
    "notification": "987654",
    "delivery": "987654",
    "data_asset": "987654",
    "data_version": "987",
    "upload": "0" * 32,
    "datastore": "987654",
}
# Objects of the install, not of a team: what an outsider may do with them is a matter of role
# (the Workers page is for staff and team admins, and charlie administers his team).
INSTANCE_ROUTES = {"worker_drain", "worker_undrain", "invitation_accept"}
# Open without signing in: an invitation link is its own credential (it offers a sign-up form).
PUBLIC_ROUTES = {"invitation_accept"}
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


ALL_PAGE_ROUTES = project_routes()


def _walkable(route: str) -> bool:
    # The REST API answers 401/JSON, not a login redirect, and takes DRF's CSRF check: its
    # routes, and those whose parameters this walk cannot fill, are held to their exact statuses
    # per role by tests/test_permission_matrix.py and tests/api/test_token_matrix.py.
    return not route.startswith("api/") and all(p in PARAMETERS for p in route_parameters(route))


def route_parameters(route: str) -> list[str]:
    if route.startswith("^") or "(?P<" in route:
        return ["<a regular expression: teach test_access.py to fill it in>"]
    return [m.group("name") for m in _PARAM.finditer(route)]


def fill(route: str, objects: dict[str, str]) -> str:
    return "/" + _PARAM.sub(lambda m: objects[PARAMETERS[m.group("name")]], route)


ROUTES = [(route, name) for route, name in ALL_PAGE_ROUTES if _walkable(route)]


def test_every_url_pattern_is_walked_here_or_in_the_permission_matrix():
    from tests.api.test_token_matrix import ROUTES as API_ROUTES
    from tests.test_permission_matrix import ROWS

    assert len(ROUTES) >= 20  # the walk reached the included URL confs
    in_matrix = {row.name for row in ROWS} | {route.name for route in API_ROUTES} | {None}
    missing = [name for route, name in ALL_PAGE_ROUTES if not _walkable(route) and name not in in_matrix]
    assert not missing, f"routes neither walked here nor in the permission matrix: {missing}"
    unknown = {route: p for route in websocket_routes() for p in route_parameters(route) if p not in PARAMETERS}
    assert not unknown, f"websocket parameters the access walk cannot fill in: {unknown}"


# ---- alice's objects ------------------------------------------------------------------------


def objects_settings(root: Path) -> dict:
    return {
        "STEPWISE_ARTIFACTS": str(root / "artifacts"),
        "STEPWISE_WORKDIR": root / "work",
        "STEPWISE_DATASTORE_ROOTS": [root],
    }


@pytest.fixture
def objects(team, alice, tmp_path, settings) -> dict[str, str]:
    for name, value in objects_settings(tmp_path).items():
        setattr(settings, name, value)
    return build_objects(team, alice, tmp_path)


def build_objects(team, alice, tmp_path: Path) -> dict[str, str]:
    """alice's objects, under `tmp_path` (the settings of objects_settings(tmp_path) in force)."""
    pipeline = make_pipeline(team, alice, name=SECRET)
    run = make_run(pipeline, alice)
    step = set_step(run, "prep", state=StepState.SUCCEEDED, attempt=1)
    data = tmp_path / "data"
    data.mkdir()
    (data / "rows.csv").write_text("a,b\n1,2\n")
    StepOutput.objects.create(step_run=step, name="data", artifact=artifacts.store_output(data, "uri_folder"))
    now = timezone.now()
    worker = Worker.objects.create(
        name="host-a:1", host="host-a", pid=1, targets=["local"], started_at=now, heartbeat_at=now
    )
    invited = teams.invitation_create(
        team=team, email="dana@example.com", role="viewer", by=alice, accept_url=lambda token: token
    )
    notification = notifications.notification_create(
        pipeline=pipeline,
        user=alice,
        kind="webhook",
        url="https://hooks.example.com/x",
        events=["run.failed"],
        allow_private=True,
    ).notification
    delivery = Delivery.objects.create(
        notification=notification, run=run, event="run.failed", payload={}, state="failed", next_attempt_at=now
    )
    (tmp_path / "rows.csv").write_text("a,b\n1,2\n")
    data_version = data_create_from_path(team=team, name="rows", path=tmp_path / "rows.csv", type_="uri_file")
    (tmp_path / "lake").mkdir()
    datastore = data_assets.datastore_create(team=team, name="lake", kind="local", root=str(tmp_path / "lake"))
    return {
        "datastore": str(datastore.pk),
        "data_asset": str(data_version.asset_id),
        "data_version": data_version.version,
        "upload": upload_begin(user=alice, filename="x.csv", size=1_000_000),
        "pipeline": str(pipeline.pk),
        "version": str(pipeline.latest_version.number),
        "run": str(run.pk),
        "step": "prep",
        "output": "data",
        "worker": str(worker.pk),
        "team": str(team.pk),
        "membership": str(team.memberships.get(user=alice).pk),
        "invitation": str(invited.invitation.pk),
        "token": invited.link,
        "notification": str(notification.pk),
        "delivery": str(delivery.pk),
        "schedule": str(
            schedules.schedule_create(
                team=team, pipeline=pipeline, user=alice, settings=schedules.Settings(name="hourly", cron="0 * * * *")
            ).pk
        ),
    }


@pytest.fixture(scope="class")
def _shared_objects(django_db_setup, django_db_blocker, tmp_path_factory):
    """alice's team, alice and her objects, built once for a class of tests (tests/conftest.py's
    built_once): only for tests whose requests write no files the others read (refused ones,
    downloads), as the files stay under one folder."""
    root = tmp_path_factory.mktemp("access")

    def build() -> SimpleNamespace:
        team = Team.objects.create(name="Data Science")
        alice = make_user("alice", team, Role.ADMIN)
        return SimpleNamespace(root=root, team=team.pk, alice=alice.pk, objects=build_objects(team, alice, root))

    yield from built_once(django_db_blocker, build, **objects_settings(root))


class SharedObjects:
    """`team`, `alice` and `objects` as the fixtures above give them, from _shared_objects: fresh
    instances read for each test, the settings re-applied."""

    @pytest.fixture
    def team(self, db, _shared_objects) -> Team:
        return Team.objects.get(pk=_shared_objects.team)

    @pytest.fixture
    def alice(self, team, _shared_objects):
        return get_user_model().objects.get(pk=_shared_objects.alice)

    @pytest.fixture
    def objects(self, team, alice, settings, _shared_objects) -> dict[str, str]:
        for name, value in objects_settings(_shared_objects.root).items():
            setattr(settings, name, value)
        return dict(_shared_objects.objects)


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
        "schedules": list(Schedule.objects.filter(team=team).values_list("pk", "name", "enabled", "handled_until")),
    }


class TestAnonymousUsers(SharedObjects):
    """alice's objects built once for the class (see SharedObjects)."""

    @pytest.mark.parametrize(("route", "name"), ROUTES, ids=[r or "home" for r, _ in ROUTES])
    def test_anonymous_users_are_sent_to_log_in(self, db, objects, route, name):
        url = fill(route, objects)
        client = client_for()
        for method in (client.get, client.post):
            response = method(url, follow=True)
            if name in PUBLIC_ROUTES:
                assert response.status_code in (200, 400), (method.__name__, url, response.status_code)
                continue
            assert refuses_anonymous(response), (method.__name__, url, response.status_code)


class TestOutsiders(SharedObjects):
    """alice's objects built once for the class (see SharedObjects)."""

    @pytest.mark.parametrize(("route", "name"), ROUTES, ids=[r or "home" for r, _ in ROUTES])
    def test_outsiders_get_404_and_change_nothing(self, db, objects, team, charlie, route, name):
        url = fill(route, objects)
        client = client_for(charlie)
        before = snapshot(team)
        has_object = bool(route_parameters(route)) and name not in INSTANCE_ROUTES
        for method in (client.get, client.post):
            response = method(url)
            if has_object and response.status_code == 405:
                # A method the view never takes is refused before any lookup: the same answer as for
                # objects that do not exist, so it reveals nothing.
                assert method(fill(route, MISSING)).status_code == 405, (method.__name__, url)
            elif has_object:
                assert response.status_code == 404, (method.__name__, url, response.status_code)
            else:
                # Lists and forms: open to every user, but nothing of alice's team shows (an empty POST to
                # a JSON or upload endpoint is bad input: 400).
                # 403: a role of the install (staff) that charlie, a team admin, does not have.
                allowed = (200, 302, 400, 405, 403) if name in INSTANCE_ROUTES else (200, 302, 400, 405)
                assert response.status_code in allowed, (method.__name__, url, response.status_code)
                body = b"".join(response.streaming_content) if response.streaming else response.content
                assert SECRET.encode() not in body, (method.__name__, url)
        # Forms that take a team or a pipeline by id refuse alice's.
        client.post(url, {"team": team.pk, "name": "planted", "pipeline": objects["pipeline"]})
        assert snapshot(team) == before


# What a member of the objects' team gets from each route: the GET's status, the POST's status
# (without a form: 400 where a form is required, 405 where the route takes no POST), and what the
# first of them that is not a 405 must show: a piece of its page, its content type for downloads
# and JSON, or where it redirects. The POST follows the GET: it may change (or delete) the objects
# the URL names.
MEMBER_SEES: dict[str, tuple[int, int, object]] = {
    "run_create": (200, 200, "Run alice-secret-pipeline"),
    "run_list": (200, 405, SECRET),
    "run_detail": (200, 405, lambda: f"Run #{Run.objects.order_by('pk').first().pk}"),
    "run_parts": (200, 405, "application/json"),
    "run_metrics": (200, 405, "application/json"),
    "run_compare": (200, 405, "Pick 2 to 10 runs"),
    "run_cancel": (405, 302, "/runs/<int:run_id>/"),
    "run_rerun": (405, 302, lambda: f"/runs/{Run.objects.order_by('-pk').first().pk}/"),
    "run_step": (200, 405, SECRET),
    "step_log": (200, 405, "application/json"),
    "step_output": (200, 405, "application/zip"),
    "worker_list": (200, 405, "host-a"),
    "worker_drain": (405, 403, ""),  # staff only: alice administers a team, not the install
    "worker_undrain": (405, 403, ""),
    "api_schema": (200, 405, "application/vnd.oai.openapi"),
    "api_docs": (200, 405, "Stepwise API"),
    "api_teams": (200, 405, "Data Science"),
    "api_pipelines": (200, 400, SECRET),
    "api_pipeline_validate": (405, 400, ""),
    "api_pipeline": (200, 405, SECRET),
    "api_versions": (200, 405, "application/json"),
    "api_version": (200, 405, "application/json"),
    "api_version_export": (200, 405, "application/zip"),
    "api_pipeline_runs": (405, 415, ""),
    "api_runs": (200, 405, "application/json"),
    "api_run": (200, 405, "application/json"),
    "api_run_cancel": (405, 200, ""),
    "api_run_rerun": (405, 415, ""),
    "api_run_metrics": (200, 405, "application/json"),
    "api_step_log": (200, 405, "application/json"),
    "api_step_output": (200, 405, "application/zip"),
    "api_endpoints": (200, 415, "application/json"),
    "token_list": (200, 200, "API tokens"),
    "endpoint_list": (200, 200, "Published endpoints"),
    "endpoint_create": (200, 200, "Publish alice-secret-pipeline as an endpoint"),
    "pipeline_list": (200, 200, SECRET),
    "pipeline_create": (200, 200, "New pipeline"),
    "pipeline_import": (200, 200, "Import a pipeline YAML"),
    "pipeline_detail": (200, 200, SECRET),
    "pipeline_settings": (405, 400, ""),
    "pipeline_interface": (405, 400, ""),
    "step_create": (200, 400, "New step"),
    "step_edit": (200, 400, "prep"),
    "step_delete": (405, 400, ""),
    "pipeline_versions": (200, 200, SECRET),
    "version_detail": (200, 200, SECRET),
    "version_diff": (200, 200, "Compare v1"),
    "version_restore": (405, 400, ""),
    "pipeline_export": (200, 200, "application/zip"),
    "team_list": (200, 200, "Data Science"),
    "team_create": (200, 200, "New team"),
    "team_detail": (200, 200, "Data Science"),
    "team_member_add": (405, 400, ""),
    "team_member_role": (405, 302, "/teams/<int:team_id>/"),
    "team_member_remove": (405, 302, "/teams/<int:team_id>/"),
    "team_leave": (405, 302, "/teams/<int:team_id>/"),
    "team_invitation_revoke": (405, 302, "/teams/<int:team_id>/"),
    "team_secret_set": (405, 400, ""),  # no name nor value: the team page again, with the errors
    "invitation_accept": (200, 302, "Join Data Science"),
    "pipeline_delete": (200, 409, "Delete alice-secret-pipeline"),
    "component_list": (200, 200, "Components"),
    "component_register": (200, 400, "Register a command component"),
    "component_register_step": (200, 400, "as a component"),
    "home": (302, 302, "/pipelines/"),
    # alice's pipeline is no template's clone: there is no update to show or apply.
    "template_update": (404, 404, ""),
    "schedule_list": (200, 200, "hourly"),
    "pipeline_schedules": (200, 400, SECRET),
    "schedule_detail": (200, 200, "Next 5 fire times"),
    "schedule_enabled": (405, 302, "/schedules/<int:schedule_id>/"),
    "schedule_delete": (405, 302, "/pipelines/<int:pk>/schedules/"),
    "api_schedules": (200, 415, "application/json"),
    "api_schedule": (200, 405, "application/json"),
    "pipeline_notifications": (200, 400, "Deliveries"),
    "notification_enabled": (405, 302, "/pipelines/<int:pk>/notifications/"),
    "notification_delete": (405, 302, "/pipelines/<int:pk>/notifications/"),
    "delivery_send_again": (405, 302, "/pipelines/<int:pk>/notifications/"),
}


def _shows(response, expected: str) -> bool:
    if response.status_code in (301, 302):
        return response["Location"] == expected
    if expected.startswith("application/"):
        return response["Content-Type"].startswith(expected)
    return expected in response.content.decode(errors="replace")


@pytest.mark.parametrize(("route", "name"), ROUTES, ids=[r or "home" for r, _ in ROUTES])
def test_members_get_the_page(db, objects, alice, route, name):
    url = fill(route, objects)
    client = client_for(alice)
    if name not in MEMBER_SEES:
        # A route added since this table was written: at least no refusal and no error.
        for method in (client.get, client.post):
            response = method(url)
            assert response.status_code not in (404, 500), (method.__name__, url, response.status_code)
        return
    get_status, post_status, shows = MEMBER_SEES[name]
    got = client.get(url)
    assert got.status_code == get_status, (url, got.status_code)
    posted = client.post(url)
    assert posted.status_code == post_status, (url, posted.status_code)
    if callable(shows):
        shows = shows()  # an object the request made (a rerun's new run)
    elif shows.startswith("/") and "<" in shows:
        shows = fill(shows[1:], objects)  # ids differ between databases
    if shows:
        assert _shows(got if get_status != 405 else posted, shows), (url, shows)


def test_members_see_the_objects_of_their_team_and_not_those_of_others(db, objects, alice):
    other = make_user("dora")
    elsewhere = teams.team_create(name="Elsewhere", user=other)
    make_pipeline(elsewhere, other, name="dora-private-pipeline")
    client = client_for(alice)
    for url in (reverse("pipeline_list"), reverse("run_list")):
        page = client.get(url)
        assert page.status_code == 200
        assert SECRET in page.content.decode() and "dora-private-pipeline" not in page.content.decode()


# ---- the admin and the RQ dashboard: staff only ---------------------------------------------

ADMIN_PUBLIC = {"admin/login/"}
# Values for the admin's (and django-rq's) parameters: staff-only refusals come before any lookup.
ADMIN_PARAMETERS = {
    "object_id": "1",
    "id": "1",
    "content_type_id": "1",
    "app_label": "pipelines_ui",
    "url": "no-such-page/",
    "queue_index": "0",
    "scheduler_index": "0",
    "connection_index": "0",
    "job_id": "no-such-job",
    "result_id": "no-such-result",
    "key": "no-such-worker",
    "scheduler_name": "no-such-scheduler",
    "cron_job_name": "no-such-cron-job",
    "token": "nosuchtoken",
}
_REGEX_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>[^()]*\)\??")


def admin_routes() -> list[str]:
    routes = []
    for route, _pattern in walk(get_resolver().url_patterns):
        if route.startswith("admin/") and route not in ADMIN_PUBLIC and route not in routes:
            routes.append(route)
    return routes


ADMIN_ROUTES = admin_routes()


def fill_admin(route: str) -> str:
    url = _REGEX_GROUP.sub(lambda m: ADMIN_PARAMETERS[m.group("name")], route)
    url = _PARAM.sub(lambda m: ADMIN_PARAMETERS[m.group("name")], url)
    return "/" + url.replace("^", "").replace("/?", "/").replace("$", "")


def fill_any(route: str, objects: dict[str, str]) -> str:
    return fill_admin(route) if route.startswith("admin/") else fill(route, objects)


def test_every_admin_pattern_is_walked():
    assert "admin/django_rq/dashboard/" in ADMIN_ROUTES  # the RQ dashboard is mounted
    assert len(ADMIN_ROUTES) >= 50
    unknown = {
        route: name
        for route in ADMIN_ROUTES
        for name in [m.group("name") for m in _PARAM.finditer(route)] + _REGEX_GROUP.findall(route)
        if name not in ADMIN_PARAMETERS
    }
    assert not unknown, f"admin URL parameters the walk cannot fill in (add them to ADMIN_PARAMETERS): {unknown}"
    # Each filled-in URL reaches the pattern it was made from, not a catch-all.
    wrong = {}
    for route in ADMIN_ROUTES:
        reached = resolve(fill_admin(route)).route.replace("^", "")
        if reached != route.replace("^", ""):
            wrong[route] = reached
    assert not wrong


def refused_to_non_staff(response) -> bool:
    """Given a followed response: refused, or sent to a login page (admin/logout/ goes by the index)."""
    if response.status_code in (401, 403):
        return True
    hops = [url for url, _status in response.redirect_chain]
    return bool(hops) and hops[-1].startswith((reverse("admin:login"), login_url()))


class TestTheAdmin(SharedObjects):
    """alice's objects built once for the class (see SharedObjects)."""

    @pytest.mark.parametrize("route", ADMIN_ROUTES)
    def test_the_admin_refuses_anonymous_users_and_members(self, db, objects, team, alice, bob, route):
        url = fill_admin(route)
        before = snapshot(team)
        # alice administers her team in Stepwise, but is not staff.
        for user in (None, bob, alice):
            client = client_for(user)
            for method in (client.get, client.post):
                response = method(url, {"name": "planted", "team": team.pk}, follow=True)
                assert refused_to_non_staff(response), (user, method.__name__, url, response.status_code)
        assert snapshot(team) == before


def test_the_rq_dashboard_is_for_staff(db, team, bob):
    url = reverse("admin:django_rq_home")
    assert url == "/admin/django_rq/dashboard/"
    anonymous = client_for().get(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("admin:login"))
    member = client_for(bob).get(url)
    assert member.status_code == 302 and member["Location"].startswith(reverse("admin:login"))
    # Staff without any model permission: the dashboard asks for staff status, nothing more.
    operator = make_user("olga")
    operator.is_staff = True
    operator.save()
    page = client_for(operator).get(url)
    assert page.status_code == 200
    assert b"default" in page.content  # the queue this project uses
    assert client_for(operator).get(reverse("admin:django_rq_jobs", args=[0])).status_code == 200


# ---- CSRF: no state-changing request without a token ----------------------------------------


def every_route() -> list[str]:
    routes = []
    for route, _pattern in walk(get_resolver().url_patterns):
        if route not in routes:
            routes.append(route)
    return routes


ALL_ROUTES = [route for route in every_route() if _walkable(route)]


def database_snapshot() -> dict[str, list]:
    """Every row of every table."""
    from django.apps import apps

    return {
        model._meta.label: list(model._default_manager.order_by("pk").values_list())
        for model in apps.get_models()
        if model._meta.managed  # django-rq's Dashboard has no table
    }


def refused_for_csrf(response) -> bool:
    return response.status_code == 403 and b"CSRF verification failed" in response.content


class TestCsrf(SharedObjects):
    """alice's objects built once for the class (see SharedObjects)."""

    @pytest.mark.parametrize("route", ALL_ROUTES)
    def test_state_changing_requests_without_a_csrf_token_are_refused(self, db, objects, team, alice, route):
        # alice may do anything, in her team and in the admin: only the missing token can stop her.
        alice.is_staff = alice.is_superuser = True
        alice.save()
        client = Client(enforce_csrf_checks=True)
        client.force_login(alice)
        url = fill_any(route, objects)
        before = database_snapshot()
        form = {"name": "planted", "team": team.pk, "pipeline": objects["pipeline"], "username": "alice"}
        for method in ("post", "put", "patch", "delete"):
            response = client.post(url, form) if method == "post" else getattr(client, method)(url)
            # 405 only where a view never takes the method and is exempt from the check (none today).
            assert refused_for_csrf(response) or response.status_code == 405, (method, url, response.status_code)
        assert database_snapshot() == before


def test_the_same_post_with_a_token_gets_through(db, objects, alice):
    # The walk above fails if the 403 came from anything but the missing token.
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get(reverse("run_detail", args=[objects["run"]]))
    before = database_snapshot()
    url = reverse("run_cancel", args=[objects["run"]])
    assert refused_for_csrf(client.post(url))
    assert database_snapshot() == before
    response = client.post(url, {"csrfmiddlewaretoken": client.cookies["csrftoken"].value})
    assert response.status_code == 302
    assert database_snapshot() != before


# ---- artifact downloads: only the output the database names --------------------------------


class TestArtifactTraversal(SharedObjects):
    """alice's objects built once for the class (see SharedObjects)."""

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
            # Upper case, double-encoded, overlong UTF-8 and full-width dots, path parameters.
            "outputs/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd/",
            "outputs/%252e%252e/",
            "outputs/%252e%252e%252f%252e%252e%252fetc%252fpasswd/",
            "outputs/data%252f..%252f..%252f/",
            "outputs/%25252e%25252e/",
            "outputs/%c0%ae%c0%ae/",
            "outputs/%c0%ae%c0%ae%c0%af%c0%ae%c0%ae%c0%afetc%c0%afpasswd/",
            "outputs/%ef%bc%8e%ef%bc%8e/",
            "outputs/..;/",
            "outputs/data;/../../",
            # Backslashes, raw and encoded, alone and mixed with slashes.
            "outputs/..\\..\\etc\\passwd/",
            "outputs/%2e%2e%5c%2e%2e%5cetc%5cpasswd/",
            "outputs/%255c..%255c/",
            "outputs/..%5C/",
            "outputs/data%5C..%5C..%2F/",
            # Absolute paths as the output name.
            "outputs/%2Fetc/",
            "outputs/%2F/",
            "outputs/C:%5Cwindows%5Cwin.ini/",
            "outputs/file:%2F%2F%2Fetc%2Fpasswd/",
        ],
    )
    def test_artifact_download_urls_with_traversal_are_404(self, db, objects, alice, tail):
        client = client_for(alice)
        good = f"/runs/{objects['run']}/steps/prep/outputs/data/"
        assert client.get(good).status_code == 200
        response = client.get(f"/runs/{objects['run']}/steps/prep/{tail}")
        assert response.status_code == 404, (tail, response.status_code)


def test_the_artifact_stores_own_paths_as_output_names_are_404(db, objects, alice, settings):
    from urllib.parse import quote

    client = client_for(alice)
    digest = StepOutput.objects.get(name="data").artifact.sha256
    root = settings.STEPWISE_ARTIFACTS
    for name in (root, digest, digest[:12], f"{root}/{digest}", f"../../{digest}", "data/rows.csv", "rows.csv"):
        for encoded in (quote(name, safe=""), quote(quote(name, safe=""), safe="")):
            response = client.get(f"/runs/{objects['run']}/steps/prep/outputs/{encoded}/")
            assert response.status_code == 404, (encoded, response.status_code)


class TestStepTraversal(SharedObjects):
    """alice's objects built once for the class (see SharedObjects)."""

    @pytest.mark.parametrize(
        "step",
        [
            "..",
            "%2e%2e",
            "%2E%2E",
            "%252e%252e",
            "..%2F..",
            "..%252F..",
            "%2Fetc",
            "%252Fetc",
            "prep%00",
            "prep%2F..%2Fprep",
            "prep%252F..%252Fprep",
            "..%5C..",
            "%c0%ae%c0%ae",
            "..;",
        ],
    )
    def test_step_names_with_traversal_are_404(self, db, objects, alice, step):
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
