"""The Workers page: who sees it, what it lists, and draining a worker from it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from runs.models import ComputeTarget, StepState, Worker, WorkerState
from runs.worker_status import user_sees_workers
from tests.conftest import make_user
from tests.runs.conftest import default_target, make_run, set_step

pytestmark = pytest.mark.django_db


def make_worker(name: str = "host-a:101", *, age_s: float = 0, **fields) -> Worker:
    """A worker as it recorded itself, its last heartbeat `age_s` seconds ago."""
    host, _, pid = name.partition(":")
    beat = timezone.now() - timedelta(seconds=age_s)
    values = {
        "host": host,
        "pid": int(pid),
        "rq_name": f"rq-{pid}",
        "targets": ["local"],
        "started_at": beat - timedelta(minutes=5),
        "heartbeat_at": beat,
    }
    values.update(fields)
    return Worker.objects.create(name=name, **values)


@pytest.fixture
def staff(db):
    user = make_user("olga")
    user.is_staff = True
    user.save()
    return user


def rows(response, section: str) -> dict[str, str]:
    """`name -> status` of the workers listed in a section (live, past) of the page."""
    page = response.context["page"]
    return {row.worker.name: row.status for row in getattr(page, section)}


# ---- who sees it ------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["alice", "charlie", "staff"])
def test_staff_and_team_admins_see_the_page_and_its_nav_link(client, request, who):
    client.force_login(request.getfixturevalue(who))
    response = client.get(reverse("worker_list"))
    assert response.status_code == 200
    assert f'href="{reverse("worker_list")}"' in response.content.decode()


def test_other_members_get_403_and_no_nav_link(client, bob, alice):
    worker = make_worker()
    client.force_login(bob)
    assert client.get(reverse("worker_list")).status_code == 403
    assert client.post(reverse("worker_drain", args=[worker.pk])).status_code == 403
    assert client.post(reverse("worker_undrain", args=[worker.pk])).status_code == 403
    worker.refresh_from_db()
    assert worker.drain is False
    assert f'href="{reverse("worker_list")}"' not in client.get(reverse("run_list")).content.decode()


def test_anonymous_users_are_sent_to_log_in(client):
    response = client.get(reverse("worker_list"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_every_page_asks_once_whether_its_user_sees_workers(bob, django_assert_num_queries):
    # The nav link asks on every page: one query per request's user, however often it is asked.
    with django_assert_num_queries(1):
        assert user_sees_workers(bob) is False
        assert user_sees_workers(bob) is False


# ---- what it lists ----------------------------------------------------------------------


def test_without_workers_it_says_how_to_start_one(client, alice):
    default_target()
    client.force_login(alice)
    html = client.get(reverse("worker_list")).content.decode()
    assert "No worker is running" in html
    assert "python manage.py stepwise_worker --queues local" in html


def test_live_workers_with_host_targets_heartbeat_and_steps_done(client, alice):
    default_target()
    make_worker("host-a:101", age_s=2, steps_done=7)
    make_worker("host-b:202", age_s=1, targets=["local", "gpu"], state=WorkerState.BUSY)
    client.force_login(alice)
    response = client.get(reverse("worker_list"))
    assert rows(response, "live") == {"host-a:101": "idle", "host-b:202": "busy"}
    assert rows(response, "past") == {}
    html = response.content.decode()
    assert "host-b" in html and "local, gpu" in html
    assert response.context["page"].live[0].heartbeat_age_s >= 2 and "s ago" in html
    assert ">7<" in html
    assert "No worker is running" not in html


def test_stopped_and_lost_workers_are_listed_apart(client, alice, settings):
    settings.STEPWISE_HEARTBEAT_S = 5  # lost after 15 s without a heartbeat
    make_worker("host-a:101", age_s=1)
    make_worker("host-a:102", age_s=16)
    make_worker("host-a:103", age_s=60, state=WorkerState.STOPPED, stopped_at=timezone.now())
    client.force_login(alice)
    response = client.get(reverse("worker_list"))
    assert rows(response, "live") == {"host-a:101": "idle"}
    assert rows(response, "past") == {"host-a:102": "lost", "host-a:103": "stopped"}
    # Nothing to drain there.
    past = response.content.decode().split('id="workers-past"')[1]
    assert "Drain" not in past


def test_a_worker_busy_with_a_long_step_lives_by_the_steps_heartbeat(client, alice, pipeline, settings):
    settings.STEPWISE_HEARTBEAT_S = 5
    run = make_run(pipeline, alice)
    # Its own heartbeat stops while it runs a step; the step's goes on.
    make_worker("host-a:101", age_s=600, state=WorkerState.BUSY)
    set_step(run, "prep", state=StepState.RUNNING, attempt=1, worker="host-a:101", heartbeat_at=timezone.now())
    client.force_login(alice)
    response = client.get(reverse("worker_list"))
    assert rows(response, "live") == {"host-a:101": "busy"}
    assert response.context["page"].live[0].heartbeat_age_s < 15


def test_the_current_step_links_to_its_run_for_its_team_only(client, alice, charlie, pipeline):
    run = make_run(pipeline, alice)
    make_worker("host-a:101", state=WorkerState.BUSY)
    set_step(run, "train", state=StepState.RUNNING, attempt=1, worker="host-a:101", heartbeat_at=timezone.now())
    step_url = reverse("run_step", args=[run.pk, "train"])

    client.force_login(alice)
    html = client.get(reverse("worker_list")).content.decode()
    assert f'href="{step_url}"' in html and f"of run #{run.pk}" in html

    # charlie administers another team: he sees the worker busy, not what it runs.
    client.force_login(charlie)
    response = client.get(reverse("worker_list"))
    assert rows(response, "live") == {"host-a:101": "busy"}
    html = response.content.decode()
    assert "a step of another team's run" in html
    assert step_url not in html and f"run #{run.pk}" not in html and "train" not in html
    assert pipeline.name not in html


def test_targets_without_a_live_worker_are_named(client, alice):
    default_target()
    ComputeTarget.objects.create(name="gpu", queue="stepwise-gpu")
    make_worker("host-a:101", targets=["local"])
    make_worker("host-b:202", targets=["gpu"], drain=True)
    client.force_login(alice)
    response = client.get(reverse("worker_list"))
    assert response.context["page"].unserved == ["gpu"]
    assert "python manage.py stepwise_worker --queues gpu" in response.content.decode()


def test_the_live_refresh_renders_the_list_alone(client, alice):
    make_worker("host-a:101")
    client.force_login(alice)
    response = client.get(reverse("worker_list"), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="workers"') and "<html" not in html
    assert "host-a:101" in html


# ---- drain ------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["alice", "charlie"])
def test_team_admins_see_workers_but_do_not_drain_them(client, request, who):
    # A worker takes every team's steps, and anyone may create a team to be its admin.
    worker = make_worker(state=WorkerState.BUSY)
    client.force_login(request.getfixturevalue(who))
    assert reverse("worker_drain", args=[worker.pk]) not in client.get(reverse("worker_list")).content.decode()
    assert client.post(reverse("worker_drain", args=[worker.pk])).status_code == 403
    assert client.post(reverse("worker_undrain", args=[worker.pk])).status_code == 403
    worker.refresh_from_db()
    assert worker.drain is False


def test_staff_drain_and_undrain_a_worker(client, staff):
    user = staff
    worker = make_worker(state=WorkerState.BUSY)
    client.force_login(user)

    response = client.post(reverse("worker_drain", args=[worker.pk]), follow=True)
    assert response.redirect_chain[-1][0] == reverse("worker_list")
    worker.refresh_from_db()
    assert worker.drain is True and worker.drain_requested_by == user and worker.drain_requested_at is not None
    assert rows(response, "live") == {worker.name: "draining"}
    html = response.content.decode()
    assert "finishes its current step, then takes no more" in html
    assert reverse("worker_undrain", args=[worker.pk]) in html

    client.post(reverse("worker_undrain", args=[worker.pk]))
    worker.refresh_from_db()
    assert (worker.drain, worker.drain_requested_by, worker.drain_requested_at) == (False, None, None)


def test_an_idle_worker_that_drains_shows_as_drained(client, staff):
    worker = make_worker()
    client.force_login(staff)
    response = client.post(reverse("worker_drain", args=[worker.pk]), follow=True)
    assert rows(response, "live") == {worker.name: "drained"}


def test_a_stopped_worker_cannot_be_drained(client, staff):
    worker = make_worker(state=WorkerState.STOPPED, stopped_at=timezone.now())
    client.force_login(staff)
    response = client.post(reverse("worker_drain", args=[worker.pk]), follow=True)
    assert "already draining or has stopped" in response.content.decode()
    worker.refresh_from_db()
    assert worker.drain is False


def test_drain_takes_only_post_and_an_existing_worker(client, staff):
    worker = make_worker()
    client.force_login(staff)
    assert client.get(reverse("worker_drain", args=[worker.pk])).status_code == 405
    assert client.post(reverse("worker_drain", args=[worker.pk + 1000])).status_code == 404
    worker.refresh_from_db()
    assert worker.drain is False
