from __future__ import annotations

import io
import re
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from pipelines_ui import services
from pipelines_ui.models import Membership, Pipeline, PipelineVersion
from tests.pipelines_ui.conftest import make_spec
from tests.pipelines_ui.test_uploads import make_zip

XSS = "<script>alert(1)</script>"

GOOD_YAML = b"""$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
display_name: hello_yaml
settings:
  default_compute: azureml:cpu-cluster
jobs:
  hello:
    type: command
    command: echo hello
"""


def pipeline_urls(p: Pipeline) -> list[tuple[str, str]]:
    """(method, url) of every page about one pipeline."""
    return [
        ("get", reverse("pipeline_detail", args=[p.pk])),
        ("post", reverse("pipeline_settings", args=[p.pk])),
        ("post", reverse("pipeline_interface", args=[p.pk])),
        ("get", reverse("step_create", args=[p.pk])),
        ("post", reverse("step_create", args=[p.pk])),
        ("get", reverse("step_edit", args=[p.pk, "prep"])),
        ("post", reverse("step_edit", args=[p.pk, "prep"])),
        ("post", reverse("step_delete", args=[p.pk, "train"])),
        ("get", reverse("pipeline_versions", args=[p.pk])),
        ("get", reverse("version_detail", args=[p.pk, 1])),
        ("post", reverse("version_restore", args=[p.pk, 1])),
        ("get", reverse("pipeline_export", args=[p.pk])),
    ]


def step_post(**overrides) -> dict:
    """A full step form submission: a step `score` reading prep's output."""
    data = {
        "base_version": "1",
        "name": "score",
        "display_name": "",
        "description": "",
        "command": "python score.py ${{inputs.data}} ${{inputs.threshold}} ${{outputs.scores}}",
        "compute": "",
        "environment": "",
        "environment_variables": "",
        "max_retries": "0",
        "timeout_s": "",
        "is_deterministic": "on",
        "in-TOTAL_FORMS": "2",
        "in-INITIAL_FORMS": "0",
        "in-0-name": "data",
        "in-0-type": "uri_folder",
        "in-0-source": "output:prep.data",
        "in-0-value": "",
        "in-1-name": "threshold",
        "in-1-type": "number",
        "in-1-source": "literal",
        "in-1-value": "0.5",
        "out-TOTAL_FORMS": "1",
        "out-INITIAL_FORMS": "0",
        "out-0-name": "scores",
        "out-0-type": "uri_folder",
        "out-0-pipeline_output": "",
        "code-TOTAL_FORMS": "1",
        "code-INITIAL_FORMS": "0",
        "code-0-path": "score.py",
        "code-0-content": "print('score')\r\n",
    }
    data.update(overrides)
    return data


def edit_post_from_page(client, url: str) -> dict:
    """The form fields as the edit page renders them (what a browser would submit unchanged)."""
    return form_data(client.get(url).content.decode())


def form_data(html: str) -> dict:
    """The fields of the forms in `html`, as a browser would submit them unchanged."""
    data: dict[str, str] = {}
    for m in re.finditer(r"<input[^>]*>", html):
        tag = m.group(0)
        name = re.search(r'name="([^"]+)"', tag)
        if not name or "csrf" in name.group(1):
            continue
        type_ = re.search(r'type="([^"]+)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if type_ and type_.group(1) == "checkbox":
            if "checked" in tag:
                data[name.group(1)] = "on"
            continue
        if type_ and type_.group(1) == "file":
            continue
        data[name.group(1)] = _unescape(value.group(1)) if value else ""
    for m in re.finditer(r'<textarea[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', html, re.S):
        if "__prefix__" not in m.group(1):
            data[m.group(1)] = _unescape(m.group(2).lstrip("\n"))
    for m in re.finditer(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', html, re.S):
        selected = re.search(r'<option value="([^"]*)"[^>]*selected', m.group(2))
        data[m.group(1)] = _unescape(selected.group(1)) if selected else ""
    return {k: v for k, v in data.items() if "__prefix__" not in k}


def _unescape(s: str) -> str:
    import html

    return html.unescape(s)


# --- permissions ---------------------------------------------------------------------


def test_anonymous_is_sent_to_login(client, pipeline):
    for method, url in [("get", reverse("pipeline_list")), *pipeline_urls(pipeline)]:
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response.url.startswith(reverse("login")), url


def test_root_redirects_to_pipeline_list(client, alice):
    client.force_login(alice)
    response = client.get("/")
    assert response.status_code == 302 and response.url == reverse("pipeline_list")


def test_charlie_gets_404_on_every_pipeline_url(client, pipeline, charlie):
    client.force_login(charlie)
    for method, url in pipeline_urls(pipeline):
        assert getattr(client, method)(url).status_code == 404, (method, url)
    assert PipelineVersion.objects.count() == 1


def test_charlie_does_not_see_the_pipeline_in_the_list(client, pipeline, charlie):
    client.force_login(charlie)
    response = client.get(reverse("pipeline_list"))
    assert b"demo" not in response.content
    response = client.get(reverse("pipeline_list"), {"team": pipeline.team_id})
    assert b"demo" not in response.content


@pytest.mark.parametrize("persona", ["alice", "bob"])
def test_team_members_see_and_edit(client, pipeline, persona, request):
    client.force_login(request.getfixturevalue(persona))
    assert client.get(reverse("pipeline_detail", args=[pipeline.pk])).status_code == 200
    response = client.post(reverse("step_create", args=[pipeline.pk]), step_post())
    assert response.status_code == 302
    pipeline.refresh_from_db()
    assert pipeline.latest_version.number == 2


def test_viewer_can_look_but_not_edit(client, pipeline, viewer):
    client.force_login(viewer)
    page = client.get(reverse("pipeline_detail", args=[pipeline.pk]))
    assert page.status_code == 200
    assert b"read only" in page.content
    assert reverse("step_create", args=[pipeline.pk]).encode() not in page.content
    assert client.get(reverse("step_edit", args=[pipeline.pk, "prep"])).status_code == 200
    for method, url in pipeline_urls(pipeline)[1:]:
        if method == "post" or url.endswith("/steps/new/"):
            response = getattr(client, method)(url, step_post() if method == "post" else None)
            assert response.status_code == 403, url
            assert b"view this pipeline but not change it" in response.content
    assert PipelineVersion.objects.count() == 1


def test_viewer_cannot_create_in_their_team(client, team, viewer):
    client.force_login(viewer)
    response = client.post(reverse("pipeline_create"), {"name": "x", "team": team.pk})
    assert response.status_code == 403
    assert not Pipeline.objects.exists()


def test_cannot_create_in_another_team(client, alice, other_team):
    client.force_login(alice)
    client.post(reverse("pipeline_create"), {"name": "x", "team": other_team.pk})
    assert not Pipeline.objects.exists()


def test_unknown_version_and_step_are_404(client, pipeline, alice):
    client.force_login(alice)
    assert client.get(reverse("version_detail", args=[pipeline.pk, 99])).status_code == 404
    assert client.get(reverse("step_edit", args=[pipeline.pk, "nope"])).status_code == 404
    assert client.get(reverse("pipeline_export", args=[pipeline.pk]), {"version": "x"}).status_code == 404


# --- list ----------------------------------------------------------------------------


def test_empty_list_offers_new_and_import(client, alice):
    client.force_login(alice)
    response = client.get(reverse("pipeline_list"))
    content = response.content.decode()
    assert "No pipelines yet" in content
    assert reverse("pipeline_create") in content and reverse("pipeline_import") in content


def test_list_search_filter_and_columns(client, alice, bob, team, other_team, compute):
    services.pipeline_create(team=team, name="churn model", user=alice, spec=make_spec("churn"))
    services.pipeline_create(team=team, name="forecast", user=alice)
    Membership.objects.create(team=other_team, user=alice, role="editor")
    services.pipeline_create(team=other_team, name="elsewhere churn", user=alice, spec=make_spec("x"))
    client.force_login(alice)

    content = client.get(reverse("pipeline_list")).content.decode()
    assert content.index("elsewhere churn") < content.index("forecast")  # newest first
    row = re.search(r"churn model</a>.*?</tr>", content, re.S).group(0)
    assert "v1" in row and '<td class="text-center">2</td>' in row

    content = client.get(reverse("pipeline_list"), {"q": "CHURN"}).content.decode()
    assert "churn model" in content and "elsewhere churn" in content and "forecast" not in content

    content = client.get(reverse("pipeline_list"), {"q": "churn", "team": other_team.pk}).content.decode()
    assert "elsewhere churn" in content and "churn model" not in content

    content = client.get(reverse("pipeline_list"), {"q": "zzz"}).content.decode()
    assert "No pipeline matches" in content


def test_list_paginates(client, alice, team):
    for i in range(25):
        services.pipeline_create(team=team, name=f"p{i:02}", user=alice)
    client.force_login(alice)
    page1 = client.get(reverse("pipeline_list")).content.decode()
    assert "Page 1 of 2" in page1
    page2 = client.get(reverse("pipeline_list"), {"page": 2}).content.decode()
    assert page2.count('class="font-weight-bold" href="/pipelines/') == 5


# --- create and import ---------------------------------------------------------------


def test_create_pipeline_then_first_step(client, alice, team, compute):
    client.force_login(alice)
    response = client.post(reverse("pipeline_create"), {"name": "fresh", "team": team.pk, "description": "d"})
    pipeline = Pipeline.objects.get(name="fresh")
    assert response.url == reverse("step_create", args=[pipeline.pk])
    assert pipeline.latest_version is None
    page = client.get(reverse("pipeline_detail", args=[pipeline.pk])).content.decode()
    assert "Add the first step" in page
    data = step_post(
        command="echo hi > ${{outputs.out}}",
        **{"in-TOTAL_FORMS": "0", "out-0-name": "out", "base_version": "0"},
    )
    assert client.post(reverse("step_create", args=[pipeline.pk]), data).status_code == 302
    pipeline.refresh_from_db()
    assert pipeline.latest_version.number == 1


def test_create_duplicate_name_is_a_form_error(client, alice, team, pipeline):
    client.force_login(alice)
    response = client.post(reverse("pipeline_create"), {"name": "demo", "team": team.pk})
    assert response.status_code == 200
    assert "already has a pipeline with this name" in response.content.decode()


def test_import_good_yaml(client, alice, team, compute):
    client.force_login(alice)
    upload = SimpleUploadedFile("pipeline.yml", GOOD_YAML)
    response = client.post(reverse("pipeline_import"), {"file": upload, "team": team.pk, "name": ""})
    pipeline = Pipeline.objects.get(name="hello_yaml")
    assert response.url == reverse("pipeline_detail", args=[pipeline.pk])
    assert pipeline.latest_version.number == 1


def test_import_bad_yaml_lists_problems_and_saves_nothing(client, alice, team, compute):
    client.force_login(alice)
    bad = GOOD_YAML.replace(b"echo hello", b"echo ${{inputs.missing}}").replace(b"cpu-cluster", b"nowhere")
    upload = SimpleUploadedFile("pipeline.yml", bad)
    response = client.post(reverse("pipeline_import"), {"file": upload, "team": team.pk})
    content = response.content.decode()
    assert response.status_code == 200
    assert "nothing was imported" in content
    assert "unknown compute" in content and "missing" in content
    assert "job hello" in content
    assert "/tmp/" not in content  # file names are relative to the upload
    assert not Pipeline.objects.exists()


def test_import_unparseable_yaml(client, alice, team, compute):
    client.force_login(alice)
    upload = SimpleUploadedFile("pipeline.yml", b"type: pipeline\njobs: [\n")
    response = client.post(reverse("pipeline_import"), {"file": upload, "team": team.pk})
    assert "pipeline.yml" in response.content.decode()
    assert not Pipeline.objects.exists()


def test_import_zip_with_code(client, alice, team, compute):
    client.force_login(alice)
    yaml = GOOD_YAML.replace(b"    command: echo hello", b"    code: ./src\n    command: python a.py")
    data = make_zip(
        {
            "proj/pipeline.yml": yaml,
            "proj/src/a.py": b"print('a')\n",
        }
    )
    upload = SimpleUploadedFile("proj.zip", data)
    response = client.post(reverse("pipeline_import"), {"file": upload, "team": team.pk})
    assert response.status_code == 302
    version = Pipeline.objects.get().latest_version
    assert "code/hello/a.py" in version.files


def test_import_zip_slip_is_rejected(client, alice, team, compute, tmp_path):
    client.force_login(alice)
    upload = SimpleUploadedFile("evil.zip", make_zip({"pipeline.yml": GOOD_YAML, "../../evil.py": b"x"}))
    response = client.post(reverse("pipeline_import"), {"file": upload, "team": team.pk})
    assert response.status_code == 200
    assert "not allowed in zip paths" in response.content.decode()
    assert not Pipeline.objects.exists()


def test_import_into_other_team_is_refused(client, alice, other_team, compute):
    client.force_login(alice)
    upload = SimpleUploadedFile("pipeline.yml", GOOD_YAML)
    response = client.post(reverse("pipeline_import"), {"file": upload, "team": other_team.pk})
    assert response.status_code == 200
    assert not Pipeline.objects.exists()


# --- steps ---------------------------------------------------------------------------


def test_add_step_creates_version_with_bindings_and_code(client, alice, pipeline):
    client.force_login(alice)
    response = client.post(reverse("step_create", args=[pipeline.pk]), step_post())
    assert response.status_code == 302 and response.url == reverse("pipeline_detail", args=[pipeline.pk])
    pipeline.refresh_from_db()
    spec = services.version_spec_with_files(pipeline.latest_version)
    step = spec.jobs["score"]
    assert step.inputs["threshold"] == 0.5
    assert step.inputs["data"].job == "prep"
    assert spec.files["code/score/score.py"] == b"print('score')\n"  # CRLF normalized
    page = client.get(reverse("pipeline_detail", args=[pipeline.pk])).content.decode()
    assert 'id="step&#45;score"' in page  # the redrawn graph (dot writes "-" as &#45;)


def test_edit_step_unchanged_makes_no_new_version(client, alice, pipeline):
    client.force_login(alice)
    url = reverse("step_edit", args=[pipeline.pk, "train"])
    data = edit_post_from_page(client, url)
    assert data["name"] == "train" and data["in-0-source"] == "output:prep.data"
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    pipeline.refresh_from_db()
    assert pipeline.latest_version.number == 1


def test_edit_step_changes_make_a_new_version(client, alice, pipeline):
    client.force_login(alice)
    url = reverse("step_edit", args=[pipeline.pk, "train"])
    data = edit_post_from_page(client, url)
    data["display_name"] = "Train v2"
    data["max_retries"] = "2"
    data["code-0-content"] = "print('train v2')\n"
    assert client.post(url, data).status_code == 302
    pipeline.refresh_from_db()
    assert pipeline.latest_version.number == 2
    spec = services.version_spec_with_files(pipeline.latest_version)
    assert spec.jobs["train"].display_name == "Train v2"
    assert spec.jobs["train"].max_retries == 2
    assert spec.files["code/train/train.py"] == b"print('train v2')\n"
    v1 = services.version_spec_with_files(pipeline.versions.get(number=1))
    assert v1.jobs["train"].display_name == "Train model"  # old versions never change


def test_step_code_from_zip(client, alice, pipeline):
    client.force_login(alice)
    data = step_post()
    data["code_zip"] = SimpleUploadedFile("code.zip", make_zip({"score.py": b"zipped", "lib/u.py": b"u"}))
    assert client.post(reverse("step_create", args=[pipeline.pk]), data).status_code == 302
    pipeline.refresh_from_db()
    files = services.version_spec_with_files(pipeline.latest_version).step_files("score")
    assert files == {"score.py": b"zipped", "lib/u.py": b"u"}


def test_invalid_step_saves_nothing_and_keeps_input(client, alice, pipeline):
    client.force_login(alice)
    data = step_post(
        **{
            "command": "python score.py ${{inputs.nope}} KEEP-THIS-COMMAND",
            "code-0-content": "my precious code",
            "in-1-value": "not-a-number",
        }
    )
    response = client.post(reverse("step_create", args=[pipeline.pk]), data)
    content = response.content.decode()
    assert response.status_code == 400
    assert "is not a number" in content
    assert "KEEP-THIS-COMMAND" in content and "my precious code" in content
    assert PipelineVersion.objects.count() == 1

    # Fix the form error: now the spec validator speaks, on the command field.
    data["in-1-value"] = "0.5"
    response = client.post(reverse("step_create", args=[pipeline.pk]), data)
    content = response.content.decode()
    assert response.status_code == 400
    assert "no input &#x27;nope&#x27; is declared" in content or "no input 'nope' is declared" in content
    assert "KEEP-THIS-COMMAND" in content and "my precious code" in content
    assert PipelineVersion.objects.count() == 1


def test_unknown_compute_on_step_is_shown_on_the_field(client, alice, pipeline, compute):
    client.force_login(alice)
    from runs.models import ComputeTarget

    gone = ComputeTarget.objects.create(name="gpu", queue="gpu")
    data = step_post(compute="gpu")
    gone.delete()
    response = client.post(reverse("step_create", args=[pipeline.pk]), data)
    assert response.status_code == 400
    assert PipelineVersion.objects.count() == 1


def test_duplicate_step_name_is_refused(client, alice, pipeline):
    client.force_login(alice)
    response = client.post(reverse("step_create", args=[pipeline.pk]), step_post(name="train"))
    assert response.status_code == 400
    assert "already exists" in response.content.decode()


def test_reserved_step_name(client, alice, pipeline):
    client.force_login(alice)
    response = client.post(reverse("step_create", args=[pipeline.pk]), step_post(name="new"))
    assert "reserved" in response.content.decode()


def test_remove_step(client, alice, pipeline):
    client.force_login(alice)
    response = client.post(reverse("step_delete", args=[pipeline.pk, "prep"]), {"base_version": "1"}, follow=True)
    assert "Could not remove prep" in response.content.decode()
    assert PipelineVersion.objects.count() == 1
    client.post(reverse("step_delete", args=[pipeline.pk, "train"]), {"base_version": "1"})
    pipeline.refresh_from_db()
    assert pipeline.latest_version.number == 2
    assert "train" not in services.version_spec_with_files(pipeline.latest_version).jobs


def test_settings_and_interface(client, alice, pipeline, compute):
    client.force_login(alice)
    response = client.post(
        reverse("pipeline_settings", args=[pipeline.pk]),
        {
            "base_version": "1",
            "name": "demo renamed",
            "display_name": "Demo",
            "description": "about",
            "default_compute": "local",
        },
    )
    assert response.status_code == 302
    pipeline.refresh_from_db()
    assert pipeline.name == "demo renamed" and pipeline.description == "about"
    spec = services.version_spec_with_files(pipeline.latest_version)
    assert spec.settings.default_compute == "local" and spec.display_name == "Demo"

    interface = {
        "base_version": "2",
        "pin-TOTAL_FORMS": "2",
        "pin-INITIAL_FORMS": "1",
        "pin-0-name": "epochs",
        "pin-0-type": "integer",
        "pin-0-default": "5",
        "pin-1-name": "lr",
        "pin-1-type": "number",
        "pin-1-default": "0.01",
        "pout-TOTAL_FORMS": "0",
        "pout-INITIAL_FORMS": "0",
    }
    assert client.post(reverse("pipeline_interface", args=[pipeline.pk]), interface).status_code == 302
    pipeline.refresh_from_db()
    spec = services.version_spec_with_files(pipeline.latest_version)
    assert spec.inputs["epochs"].default == 5 and spec.inputs["lr"].default == 0.01

    interface["pin-1-default"] = "fast"
    response = client.post(reverse("pipeline_interface", args=[pipeline.pk]), interface)
    assert response.status_code == 400 and "is not a number" in response.content.decode()


def test_removing_a_used_pipeline_input_is_refused(client, alice, pipeline):
    client.force_login(alice)
    interface = {
        "base_version": "1",
        "pin-TOTAL_FORMS": "1",
        "pin-INITIAL_FORMS": "1",
        "pin-0-name": "epochs",
        "pin-0-type": "integer",
        "pin-0-DELETE": "on",
        "pout-TOTAL_FORMS": "0",
        "pout-INITIAL_FORMS": "0",
    }
    response = client.post(reverse("pipeline_interface", args=[pipeline.pk]), interface)
    assert response.status_code == 400
    assert "nothing was saved" in response.content.decode()
    assert PipelineVersion.objects.count() == 1


# --- escaping ------------------------------------------------------------------------


def test_script_in_display_name_and_description_is_escaped(client, alice, pipeline):
    client.force_login(alice)
    data = step_post(display_name=XSS, description=XSS)
    assert client.post(reverse("step_create", args=[pipeline.pk]), data).status_code == 302
    client.post(
        reverse("pipeline_settings", args=[pipeline.pk]),
        {"base_version": "2", "name": "demo", "display_name": XSS, "description": XSS},
    )
    for url in [
        reverse("pipeline_detail", args=[pipeline.pk]),
        reverse("step_edit", args=[pipeline.pk, "score"]),
        reverse("pipeline_versions", args=[pipeline.pk]),
        reverse("version_detail", args=[pipeline.pk, 2]),
        reverse("pipeline_list"),
    ]:
        content = client.get(url).content.decode()
        assert XSS not in content, url
    content = client.get(reverse("pipeline_detail", args=[pipeline.pk])).content.decode()
    svg = content[content.index("<svg") : content.index("</svg>")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content.replace(svg, "")


# --- versions and export -------------------------------------------------------------


def test_versions_page_lists_each_version_with_graph(client, alice, pipeline):
    client.force_login(alice)
    client.post(reverse("step_create", args=[pipeline.pk]), step_post())
    content = client.get(reverse("pipeline_versions", args=[pipeline.pk])).content.decode()
    assert "v2" in content and "v1" in content
    assert content.count("<svg") == 2
    v1 = pipeline.versions.get(number=1)
    assert v1.content_hash[:10] in content
    assert "alice" in content


def test_restore_version(client, alice, pipeline):
    client.force_login(alice)
    client.post(reverse("step_create", args=[pipeline.pk]), step_post())
    response = client.post(reverse("version_restore", args=[pipeline.pk, 1]), {"base_version": "2"})
    assert response.status_code == 302
    pipeline.refresh_from_db()
    assert pipeline.latest_version.number == 3
    assert pipeline.latest_version.content_hash == pipeline.versions.get(number=1).content_hash


def test_export_zip(client, alice, pipeline):
    client.force_login(alice)
    client.post(reverse("step_create", args=[pipeline.pk]), step_post())
    response = client.get(reverse("pipeline_export", args=[pipeline.pk]), {"version": 1})
    assert response["Content-Type"] == "application/zip"
    assert 'filename="demo-v1.zip"' in response["Content-Disposition"]
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert "pipeline.yml" in names
    assert any(n.endswith("prep.py") for n in names)
    assert not any("score" in n for n in names)
    latest = zipfile.ZipFile(io.BytesIO(client.get(reverse("pipeline_export", args=[pipeline.pk])).content))
    assert any(n.endswith("score.py") for n in latest.namelist())


def test_export_round_trips_through_import(client, alice, pipeline, team, tmp_path):
    client.force_login(alice)
    data = client.get(reverse("pipeline_export", args=[pipeline.pk])).content
    zipfile.ZipFile(io.BytesIO(data)).extractall(tmp_path)
    version = services.pipeline_import(team=team, path=tmp_path / "pipeline.yml", user=alice, name="copy")
    original = services.version_spec_with_files(pipeline.latest_version)
    copy = services.version_spec_with_files(version)
    assert copy.jobs.keys() == original.jobs.keys()
    assert copy.files == original.files
    assert copy.jobs["train"].inputs == original.jobs["train"].inputs


def test_environment_as_json_object(client, alice, pipeline):
    client.force_login(alice)
    data = step_post(environment='{"image": "python:3.11-slim"}')
    assert client.post(reverse("step_create", args=[pipeline.pk]), data).status_code == 302
    pipeline.refresh_from_db()
    saved = services.version_spec_with_files(pipeline.latest_version)
    assert saved.jobs["score"].environment == {"image": "python:3.11-slim"}
    response = client.post(reverse("step_create", args=[pipeline.pk]), step_post(name="other", environment="{nope"))
    assert response.status_code == 400 and "Not valid JSON" in response.content.decode()
    deep = '{"a":' + "[" * 2400 + "]" * 2400 + "}"  # within max_length, too deep for the decoder: was a 500
    response = client.post(reverse("step_create", args=[pipeline.pk]), step_post(name="other", environment=deep))
    assert response.status_code == 400 and "nested too deeply" in response.content.decode()
    # Saved, these made every run of the pipeline fail to start (a 500 and a run stuck queued).
    for bad, says in (
        ('{"a": NaN}', "NaN is not a JSON number"),
        ('{"a": -Infinity}', "Infinity is not a JSON number"),
        ('{"image": "py\\u0000"}', "NUL"),
        ('{"image": "py\\ud800"}', "surrogate"),
        ('{"a":' + "[" * 60 + "]" * 60 + "}", "more than 50 levels"),
        ('{"a": 1e400}', "inf is not a finite number"),
    ):
        response = client.post(reverse("step_create", args=[pipeline.pk]), step_post(name="other", environment=bad))
        assert response.status_code == 400 and says in response.content.decode(), bad


def test_inputs_typed_before_the_first_step_are_shown_again_not_dropped(client, alice, team):
    empty = services.pipeline_create(team=team, name="fresh", user=alice)
    client.force_login(alice)
    interface = {
        "base_version": "0",
        "pin-TOTAL_FORMS": "1",
        "pin-INITIAL_FORMS": "0",
        "pin-0-name": "learning_rate",
        "pin-0-type": "number",
        "pin-0-default": "0.01",
        "pout-TOTAL_FORMS": "0",
        "pout-INITIAL_FORMS": "0",
    }
    response = client.post(reverse("pipeline_interface", args=[empty.pk]), interface)
    html = response.content.decode()
    assert response.status_code == 400 and "Add a step first" in html
    assert 'value="learning_rate"' in html and 'value="0.01"' in html
    empty.refresh_from_db()
    assert empty.latest_version is None


def test_code_files_no_folder_can_hold_are_refused_naming_the_file(client, alice, pipeline):
    # The step's folder could not be written (a 500 when it ran, or when it was exported).
    client.force_login(alice)
    clash = step_post(**{"code-TOTAL_FORMS": "2", "code-1-path": "score.py/helpers.py", "code-1-content": "x = 1\n"})
    response = client.post(reverse("step_create", args=[pipeline.pk]), clash)
    assert response.status_code == 400 and "is also a folder of another file here" in response.content.decode()
    long = step_post(**{"code-0-path": "é" * 200 + ".py"})
    response = client.post(reverse("step_create", args=[pipeline.pk]), long)
    assert response.status_code == 400 and "at most 255 bytes" in response.content.decode()
    assert "score" not in services.version_spec_with_files(pipeline.latest_version).jobs
