from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.urls import reverse

from pipelines_ui.models import Membership, Role
from runs import artifacts
from runs.models import Artifact, ComputeTarget, LogChunk, Metric, Run, RunState, StepOutput, StepRun, StepState
from tests.runs.conftest import PIPELINE_YAML, make_pipeline, make_run, set_step

pytestmark = pytest.mark.django_db


def store(tmp_path: Path, kind: str, files: dict[str, bytes]) -> Artifact:
    src = tmp_path / "src"
    if kind == Artifact.Kind.FILE:
        src.parent.mkdir(parents=True, exist_ok=True)
        ((name, data),) = files.items()
        path = src.with_name(name)
        path.write_bytes(data)
        return artifacts.store_output(path, kind)
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    return artifacts.store_output(src, kind)


def run_urls(run: Run) -> list[str]:
    return [
        reverse("run_detail", args=[run.pk]),
        reverse("run_parts", args=[run.pk]),
        reverse("run_step", args=[run.pk, "train"]),
        reverse("step_log", args=[run.pk, "train"]),
        reverse("step_log", args=[run.pk, "train"]) + "?download=1",
        reverse("step_output", args=[run.pk, "train", "model"]),
        reverse("run_create", args=[run.pipeline_id]),
    ]


# ---- access ----------------------------------------------------------------------------


@pytest.fixture
def finished_run(run, tmp_path):
    model = store(tmp_path, Artifact.Kind.FILE, {"model.bin": b"weights"})
    step = set_step(run, "train", state=StepState.SUCCEEDED, attempt=1, exit_code=0)
    StepOutput.objects.create(step_run=step, name="model", artifact=model)
    LogChunk.objects.create(step_run=step, attempt=1, seq=0, line_count=2, text="one\ntwo")
    return run


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_team_members_see_every_run_url(finished_run, client, request, who):
    client.force_login(request.getfixturevalue(who))
    # What each URL must show: the run, its step's log and output, the pipeline's run form.
    shows = [
        f"Run #{finished_run.pk}".encode(),
        f"Run #{finished_run.pk}".encode(),
        b"two",
        b'"two"',
        b"one\ntwo",
        b"weights",
        finished_run.pipeline.name.encode(),
    ]
    for url, expected in zip(run_urls(finished_run), shows, strict=True):
        response = client.get(url)
        assert response.status_code == 200, url
        assert expected in body(response), (url, expected)


def test_outsiders_get_404_on_every_run_url(finished_run, client, charlie):
    client.force_login(charlie)
    for url in run_urls(finished_run):
        assert client.get(url).status_code == 404, url
    for name in ("run_cancel", "run_rerun"):
        assert client.post(reverse(name, args=[finished_run.pk])).status_code == 404
    assert client.post(reverse("run_create", args=[finished_run.pipeline_id])).status_code == 404
    assert Run.objects.count() == 1


def test_anonymous_users_are_sent_to_sign_in(finished_run, client):
    for url in run_urls(finished_run) + [reverse("run_list")]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url


def test_outsiders_do_not_see_runs_in_the_list(finished_run, client, charlie):
    client.force_login(charlie)
    response = client.get(reverse("run_list"))
    assert response.status_code == 200
    assert list(response.context["runs"]) == []


def test_viewers_can_watch_but_not_start_cancel_or_rerun(finished_run, client, team):
    from tests.conftest import make_user

    viewer = make_user("vera", team, Role.VIEWER)
    client.force_login(viewer)
    page = client.get(reverse("run_detail", args=[finished_run.pk]))
    assert page.status_code == 200 and f"Run #{finished_run.pk}" in page.content.decode()
    assert client.get(reverse("run_create", args=[finished_run.pipeline_id])).status_code == 403
    assert client.post(reverse("run_create", args=[finished_run.pipeline_id]), {}).status_code == 403
    assert client.post(reverse("run_cancel", args=[finished_run.pk])).status_code == 403
    assert client.post(reverse("run_rerun", args=[finished_run.pk]), {"mode": "all"}).status_code == 403
    assert Run.objects.count() == 1
    page = client.get(reverse("run_detail", args=[finished_run.pk])).content.decode()
    assert 'id="run-actions"' not in page


@pytest.mark.parametrize(
    "output",
    ["..", "...", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "model%00", "model.bin", "../model", "MODEL"],
)
def test_output_download_only_serves_outputs_named_in_the_database(finished_run, client, alice, output):
    client.force_login(alice)
    url = f"/runs/{finished_run.pk}/steps/train/outputs/{output}/"
    assert client.get(url).status_code == 404


def test_traversal_in_the_step_name_is_a_404(finished_run, client, alice):
    client.force_login(alice)
    for step in ("..", "..%2Ftrain", "train%2F..", "nope", "train%00"):
        assert client.get(f"/runs/{finished_run.pk}/steps/{step}/log/").status_code == 404
        assert client.get(f"/runs/{finished_run.pk}/steps/{step}/outputs/model/").status_code == 404


# ---- downloads -----------------------------------------------------------------------------


def test_file_output_downloads_as_the_file(finished_run, client, alice):
    client.force_login(alice)
    response = client.get(reverse("step_output", args=[finished_run.pk, "train", "model"]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"weights"
    assert 'filename="model.bin"' in response["Content-Disposition"]


@pytest.mark.parametrize("name", ["report.html", "page.svg", "evil.js", "style.css"])
def test_file_output_is_never_served_as_a_type_the_browser_runs(run, client, alice, tmp_path, name):
    # A step's output is anyone's bytes: served from our origin as text/javascript or text/css, a
    # <script src> or <link> on a page would load it despite the CSP's 'self' (attachment does not stop that).
    output = store(tmp_path, Artifact.Kind.FILE, {name: b"alert(document.cookie)//<script>alert(1)</script>"})
    step = set_step(run, "train", state=StepState.SUCCEEDED, attempt=1, exit_code=0)
    StepOutput.objects.create(step_run=step, name="model", artifact=output)
    client.force_login(alice)
    response = client.get(reverse("step_output", args=[run.pk, "train", "model"]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment;")
    assert f'filename="{name}"' in response["Content-Disposition"]
    assert response["X-Content-Type-Options"] == "nosniff"


def test_folder_output_downloads_as_a_zip(run, client, alice, tmp_path):
    folder = store(tmp_path, Artifact.Kind.FOLDER, {"rows.csv": b"a,b\n1,2\n", "nested/more.txt": b"x" * 5000})
    step = set_step(run, "prep", state=StepState.SUCCEEDED, attempt=1)
    StepOutput.objects.create(step_run=step, name="data", artifact=folder)
    client.force_login(alice)
    response = client.get(reverse("step_output", args=[run.pk, "prep", "data"]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert sorted(archive.namelist()) == ["nested/more.txt", "rows.csv"]
    assert archive.read("nested/more.txt") == b"x" * 5000


def test_a_backslash_in_a_folder_output_name_is_no_folder_in_its_zip(run, client, alice, tmp_path):
    # Legal in a Linux file name, a folder separator to Windows' extractor: `a\\b.txt` would make `a/`.
    files = {"a\\b.txt": b"1", "a_b.txt": b"2", "d\\e/f.txt": b"3", "keep/x.txt": b"4"}
    folder = store(tmp_path, Artifact.Kind.FOLDER, files)
    step = set_step(run, "prep", state=StepState.SUCCEEDED, attempt=1)
    StepOutput.objects.create(step_run=step, name="data", artifact=folder)
    client.force_login(alice)
    response = client.get(reverse("step_output", args=[run.pk, "prep", "data"]))
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert not any("\\" in name for name in archive.namelist())
    assert sorted(archive.namelist()) == ["a_b (2).txt", "a_b.txt", "d_e/f.txt", "keep/x.txt"]
    assert archive.read("a_b.txt") == b"2" and archive.read("a_b (2).txt") == b"1"
    assert archive.read("d_e/f.txt") == b"3"


def test_control_characters_in_a_folder_output_name_are_replaced_in_its_zip(run, client, alice, tmp_path):
    files = {"line\nbreak.txt": b"1", "\x1b[2Jclear.txt": b"2", "del\x7f\x85.txt": b"3"}
    folder = store(tmp_path, Artifact.Kind.FOLDER, files)
    step = set_step(run, "prep", state=StepState.SUCCEEDED, attempt=1)
    StepOutput.objects.create(step_run=step, name="data", artifact=folder)
    client.force_login(alice)
    response = client.get(reverse("step_output", args=[run.pk, "prep", "data"]))
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert sorted(archive.namelist()) == ["_[2Jclear.txt", "del__.txt", "line_break.txt"]
    assert archive.read("line_break.txt") == b"1"


def test_missing_artifact_files_are_a_404(finished_run, client, alice):
    artifact = StepOutput.objects.get(step_run__run=finished_run, name="model").artifact
    artifacts.remove_artifact_files(artifact)
    client.force_login(alice)
    assert client.get(reverse("step_output", args=[finished_run.pk, "train", "model"])).status_code == 404


def test_full_log_download_is_plain_text(finished_run, client, alice):
    client.force_login(alice)
    response = client.get(reverse("step_log", args=[finished_run.pk, "train"]) + "?download=1")
    assert response["Content-Type"].startswith("text/plain")
    assert b"".join(response.streaming_content) == b"one\ntwo\n"


# ---- the run form ----------------------------------------------------------------------------


def test_run_form_shows_typed_inputs_with_defaults(pipeline, client, bob):
    client.force_login(bob)
    response = client.get(reverse("run_create", args=[pipeline.pk]))
    html = response.content.decode()
    assert 'name="in_epochs"' in html and 'type="number"' in html and 'value="3"' in html
    assert 'name="in_verbose"' in html and 'type="checkbox"' in html
    assert '<select name="in_mode"' in html and '<option value="full"' in html
    assert "Training epochs" in html
    assert 'name="force_rerun"' in html


def test_run_form_bad_integer_is_an_inline_error_and_creates_nothing(pipeline, client, alice):
    client.force_login(alice)
    response = client.post(reverse("run_create", args=[pipeline.pk]), {"in_epochs": "three", "in_mode": "fast"})
    assert response.status_code == 200
    assert "expected integer" in response.context["form"].errors["in_epochs"][0]
    assert "expected integer" in response.content.decode()
    assert Run.objects.count() == 0


def test_run_form_bad_enum_value_is_an_inline_error(pipeline, client, alice):
    client.force_login(alice)
    response = client.post(reverse("run_create", args=[pipeline.pk]), {"in_epochs": "3", "in_mode": "slow"})
    assert response.status_code == 200
    assert "in_mode" in response.context["form"].errors
    assert Run.objects.count() == 0


def test_run_form_starts_a_run_and_redirects_to_it(pipeline, client, alice, django_capture_on_commit_callbacks):
    client.force_login(alice)
    data = {"in_epochs": "7", "in_rate": "0.25", "in_verbose": "on", "in_mode": "full", "force_rerun": "on"}
    response = client.post(reverse("run_create", args=[pipeline.pk]), data)
    run = Run.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("run_detail", args=[run.pk])
    assert run.inputs == {"epochs": 7, "rate": 0.25, "verbose": True, "mode": "full"}
    assert run.force_rerun is True
    assert run.created_by == alice
    assert sorted(run.steps.values_list("name", flat=True)) == ["prep", "report", "train"]


def test_run_form_of_another_teams_pipeline_is_404(client, charlie, other_team):
    pipeline = make_pipeline(other_team, charlie)
    client.force_login(charlie)
    assert client.get(reverse("run_create", args=[pipeline.pk])).status_code == 200
    assert client.get(reverse("run_create", args=[pipeline.pk + 1000])).status_code == 404


# ---- cancel and rerun -----------------------------------------------------------------------------


def test_cancel_skips_steps_that_never_started(run, client, alice, monkeypatch):
    sent = []
    monkeypatch.setattr("runs.broadcast.send", lambda run_id, payload, **kw: sent.append(payload))
    client.force_login(alice)
    response = client.post(reverse("run_cancel", args=[run.pk]))
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.cancel_requested
    assert run.state == RunState.CANCELED
    assert set(run.steps.values_list("state", "reason")) == {(StepState.SKIPPED, "the run was canceled")}


def test_rerun_from_a_step_forces_it_and_its_downstream(run, client, alice):
    Run.objects.filter(pk=run.pk).update(state=RunState.SUCCEEDED)
    client.force_login(alice)
    response = client.post(reverse("run_rerun", args=[run.pk]), {"mode": "from", "step": "train"})
    new = Run.objects.exclude(pk=run.pk).get()
    assert response["Location"] == reverse("run_detail", args=[new.pk])
    assert new.rerun_of == run
    assert set(new.steps.filter(force=True).values_list("name", flat=True)) == {"train", "report"}


def test_rerun_from_an_unknown_step_says_so(run, client, alice):
    client.force_login(alice)
    response = client.post(reverse("run_rerun", args=[run.pk]), {"mode": "from", "step": "nope"}, follow=True)
    assert Run.objects.count() == 1
    assert "no step named" in response.content.decode()


# ---- the run page ------------------------------------------------------------------------------


def test_run_page_shows_graph_steps_and_state(finished_run, client, alice):
    set_step(finished_run, "prep", state=StepState.REUSED, attempt=0)
    client.force_login(alice)
    response = client.get(reverse("run_step", args=[finished_run.pk, "train"]))
    # dot writes hyphens in ids and classes as the entity &#45;; the DOM sees "step-train".
    html = response.content.decode().replace("&#45;", "-")
    assert "<svg" in html and 'id="step-train"' in html
    # One uncoloured SVG per version; the page's states (painted by run.js) ride in its config.
    assert '"prep": ["reused", 0]' in html
    assert reverse("run_step", args=[finished_run.pk, "train"]) in html
    assert '"nodes": {"prep": "step-prep", "train": "step-train", "report": "step-report"}' in html
    assert "1 / 3 steps" in html or "2 / 3 steps" in html
    assert 'data-step="prep"' in html and 'data-step="report"' in html
    assert '<div class="log-line">one</div>' in html
    assert reverse("step_output", args=[finished_run.pk, "train", "model"]) in html


def test_reused_step_links_to_its_origin(finished_run, client, alice):
    origin = StepRun.objects.get(run=finished_run, name="train")
    later = make_run(finished_run.pipeline, alice)
    set_step(later, "train", state=StepState.REUSED, reused_from=origin)
    client.force_login(alice)
    html = client.get(reverse("run_detail", args=[later.pk])).content.decode()
    assert f"run #{finished_run.pk}, step train" in html
    assert reverse("run_step", args=[finished_run.pk, "train"]) in html


def test_log_text_is_escaped(run, client, alice):
    step = set_step(run, "prep", state=StepState.RUNNING, attempt=1)
    LogChunk.objects.create(step_run=step, attempt=1, seq=0, line_count=1, text="<script>alert(1)</script>")
    client.force_login(alice)
    html = client.get(reverse("run_step", args=[run.pk, "prep"])).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_queued_step_without_a_worker_says_it_is_waiting(run, client, alice, monkeypatch):
    monkeypatch.setattr("runs.selectors.queue_has_worker", lambda queue: False)
    set_step(run, "prep", state=StepState.QUEUED, attempt=1)
    client.force_login(alice)
    html = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "waiting for a worker on local" in html
    monkeypatch.setattr("runs.selectors.queue_has_worker", lambda queue: True)
    assert "waiting for a worker" not in client.get(reverse("run_detail", args=[run.pk])).content.decode()


def test_metrics_show_a_table_and_sparkline_points(finished_run, client, alice):
    step = StepRun.objects.get(run=finished_run, name="train")
    for i, loss in enumerate([0.9, 0.5, 0.25]):
        Metric.objects.create(step_run=step, name="loss", value=loss, step=i)
    Metric.objects.create(step_run=step, name="accuracy", value=0.8)
    client.force_login(alice)
    html = client.get(reverse("run_step", args=[finished_run.pk, "train"])).content.decode()
    assert 'data-metric="loss"' in html and 'data-points="0.9,0.5,0.25"' in html
    assert 'data-metric="accuracy"' in html


def test_parts_render_the_same_partials_as_the_page(finished_run, client, alice):
    client.force_login(alice)
    page = client.get(reverse("run_step", args=[finished_run.pk, "train"])).content.decode()
    parts = client.get(reverse("run_parts", args=[finished_run.pk]) + "?step=train").json()["parts"]
    assert set(parts) == {"header", "progress", "steps", "timeline", "step_detail", "metrics", "trials"}
    for key in ("steps", "step_detail"):
        assert parts[key].strip()[:200] in page


def test_unknown_step_page_is_404(run, client, alice):
    client.force_login(alice)
    assert client.get(reverse("run_parts", args=[run.pk]) + "?step=train%00").status_code == 404
    assert client.get(reverse("run_step", args=[run.pk, "nope"])).status_code == 404
    assert client.get(reverse("run_parts", args=[run.pk]) + "?step=nope").status_code == 404


# ---- the runs list ------------------------------------------------------------------------------


def test_runs_list_filters_by_pipeline_and_state(pipeline, client, alice, team):
    other = make_pipeline(team, alice, name="other")
    first = make_run(pipeline, alice)
    second = make_run(other, alice)
    Run.objects.filter(pk=second.pk).update(state=RunState.FAILED)
    client.force_login(alice)

    def listed(query: str) -> list[int]:
        return [r.pk for r in client.get(reverse("run_list") + query).context["runs"]]

    assert listed("") == [second.pk, first.pk]
    assert listed(f"?pipeline={pipeline.pk}") == [first.pk]
    assert listed("?state=failed") == [second.pk]
    assert listed(f"?state=failed&pipeline={pipeline.pk}") == []
    assert listed("?state=bogus&pipeline=x") == [second.pk, first.pk]


def test_runs_list_is_paginated_with_a_constant_number_of_queries(
    pipeline, client, alice, bob, team, django_assert_max_num_queries
):
    other = make_pipeline(team, bob, name="other")
    for i in range(3):
        make_run(pipeline if i % 2 else other, bob if i % 2 else alice)
    client.force_login(alice)
    with django_assert_max_num_queries(8) as few:
        client.get(reverse("run_list"))
    for i in range(30):
        make_run(pipeline if i % 2 else other, bob if i % 2 else alice)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(reverse("run_list"))
    assert len(response.context["runs"]) == 25
    assert response.context["page"].paginator.num_pages == 2
    html = response.content.decode()
    assert "page=2" in html and "bob" in html and "0/3" in html
    assert len(client.get(reverse("run_list") + "?page=2").context["runs"]) == 8


def test_pipeline_link_filters_the_list(pipeline, client, alice):
    run = make_run(pipeline, alice)
    client.force_login(alice)
    html = client.get(reverse("run_list")).content.decode()
    assert f'href="{reverse("run_list")}?pipeline={pipeline.pk}"' in html
    assert f'href="{run.get_absolute_url()}"' in html


def test_runs_list_filtered_to_one_pipeline_shows_its_versions_not_its_name(pipeline, client, alice, team):
    other = make_pipeline(team, alice, name="other-pipeline")
    make_run(pipeline, alice)
    make_run(other, alice)
    client.force_login(alice)

    def table(query: str) -> str:
        html = client.get(reverse("run_list") + query).content.decode()
        return html.split('id="runs-table"')[1].split("</table>")[0]

    everything = table("")
    assert "<th>Pipeline</th>" in everything and "<th>Version</th>" not in everything
    assert "other-pipeline</a>" in everything and f"{pipeline.name}</a>" in everything
    filtered = table(f"?pipeline={other.pk}")
    assert "<th>Pipeline</th>" not in filtered and "<th>Version</th>" in filtered
    assert "other-pipeline" not in filtered and f"?pipeline={other.pk}" not in filtered
    assert '<span class="text-muted small">v1</span>' in filtered
    assert "<th>Pipeline</th>" in table("?state=failed")


def test_membership_is_what_grants_access(finished_run, client, charlie, team):
    Membership.objects.create(team=team, user=charlie, role=Role.VIEWER)
    client.force_login(charlie)
    response = client.get(reverse("run_detail", args=[finished_run.pk]))
    assert response.status_code == 200
    assert f"Run #{finished_run.pk}" in response.content.decode()


def test_run_page_graph_is_shared_by_runs_of_a_version_and_links_to_its_own_run(finished_run, client, alice):
    from pipelines_ui import graph

    other = make_run(finished_run.pipeline, alice)
    client.force_login(alice)
    client.get(reverse("run_detail", args=[finished_run.pk]))
    laid_out = len(graph._lru)
    html = client.get(reverse("run_detail", args=[other.pk])).content.decode()
    assert len(graph._lru) == laid_out, "the second run of the version reuses the cached layout"
    assert reverse("run_step", args=[other.pk, "train"]) in html
    assert reverse("run_step", args=[finished_run.pk, "train"]) not in html


def test_a_large_run_lists_the_most_telling_steps_first(finished_run, client, alice, monkeypatch):
    from runs import views

    monkeypatch.setattr(views, "MAX_STEP_ROWS", 1)
    set_step(finished_run, "report", state=StepState.FAILED)
    client.force_login(alice)
    html = client.get(reverse("run_detail", args=[finished_run.pk])).content.decode()
    assert 'data-step="report"' in html and 'data-step="prep"' not in html
    assert "Show all steps" in html
    html = client.get(reverse("run_detail", args=[finished_run.pk]) + "?all=1").content.decode()
    assert 'data-step="prep"' in html


def test_admin_lists_compute_targets_and_runs_read_only(finished_run, client, alice):
    alice.is_staff = alice.is_superuser = True
    alice.save()
    client.force_login(alice)
    assert client.get("/admin/runs/computetarget/").status_code == 200
    assert client.get(f"/admin/runs/run/{finished_run.pk}/change/").status_code == 200
    assert client.get("/admin/runs/run/add/").status_code == 403


def test_the_admin_refuses_a_bad_environment_definition_naming_it(client, alice):
    alice.is_staff = alice.is_superuser = True
    alice.save()
    client.force_login(alice)
    target = ComputeTarget.objects.get(name="local")
    form = {
        "name": target.name,
        "aliases": json.dumps(target.aliases),
        "queue": target.queue,
        "description": "",
        "is_default": "on",
        "isolation": target.isolation,
        "network": "on",
        "environment_variables": "{}",
    }
    url = f"/admin/runs/computetarget/{target.pk}/change/"
    bad = client.post(url, {**form, "environments": json.dumps({"sk": {"dependencies": [{"pip": ["-e ."]}]}})})
    assert bad.status_code == 200 and "sk: " in bad.content.decode()
    target.refresh_from_db()
    assert target.environments == {}
    good = {"sk": {"dependencies": [{"pip": ["scikit-learn==1.5.2"]}]}}
    assert client.post(url, {**form, "environments": json.dumps(good)}).status_code == 302
    target.refresh_from_db()
    assert target.environments == good


def test_a_fully_reused_run_says_nothing_executed_and_where_the_logs_are(finished_run, client, alice):
    later = make_run(finished_run.pipeline, alice)
    for step in StepRun.objects.filter(run=finished_run):
        set_step(later, step.name, state=StepState.REUSED, reused_from=step)
    client.force_login(alice)
    html = client.get(reverse("run_step", args=[later.pk, "train"])).content.decode()
    assert "Every step was reused from earlier runs: nothing executed." in html
    assert "Nothing ran here: the log is on" in html
    assert "No step has started yet." not in html


def test_input_descriptions_and_defaults_are_escaped_in_form_help(client, alice, team):
    """Form help text is rendered as HTML: an author's description or default must not become markup."""
    hostile = PIPELINE_YAML.replace(
        "note: {type: string, optional: true}",
        "note: {type: string, optional: true, description: '<img src=x onerror=alert(1)>'}\n"
        "  title: {type: string, default: '\"><svg/onload=alert(7)>'}",
    )
    pipeline = make_pipeline(team, alice, name="hostile", yaml_text=hostile)
    client.force_login(alice)
    for url in (reverse("run_create", args=[pipeline.pk]), reverse("template_publish", args=[pipeline.pk])):
        html = client.get(url).content.decode()
        assert "<img src=x" not in html and "<svg/onload" not in html, url
    run_form = client.get(reverse("run_create", args=[pipeline.pk])).content.decode()
    assert "&lt;img src=x onerror=alert(1)&gt;" in run_form
    publish = client.get(reverse("template_publish", args=[pipeline.pk])).content.decode()
    assert "&lt;svg/onload=alert(7)&gt;" in publish
