"""The editor's pages when two people edit one pipeline: merged saves, refused saves that keep
the user's input, and forms that do not say which version they were opened on."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from django.test import Client
from django.urls import reverse

from pipelines_ui import services
from pipelines_ui.models import PipelineVersion
from tests.pipelines_ui.test_views import edit_post_from_page, form_data, step_post

ALICE_COMMAND = "python train.py --alice ${{inputs.data}} ${{inputs.epochs}} ${{outputs.model}}"


def bob_edits(pipeline, bob, step: str, base: int = 1, **changes) -> PipelineVersion:
    spec = services.pipeline_base_spec(pipeline=pipeline, number=base)
    edited = replace(spec.jobs[step], **changes)
    return services.pipeline_step_save(
        pipeline=pipeline, step=edited, author=bob, original_name=step, base_version=base
    ).version


def latest_spec(pipeline):
    pipeline.refresh_from_db()
    return services.version_spec_with_files(pipeline.latest_version)


def base_in(html: str) -> list[str]:
    return re.findall(r'name="base_version" value="([^"]*)"', html)


@pytest.fixture
def alice_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


# --- steps -----------------------------------------------------------------------------


def test_pages_carry_the_version_they_show(alice_client, pipeline, bob):
    html = alice_client.get(reverse("step_edit", args=[pipeline.pk, "train"])).content.decode()
    assert base_in(html) == ["1"]
    bob_edits(pipeline, bob, "prep", max_retries=1)
    html = alice_client.get(reverse("pipeline_detail", args=[pipeline.pk])).content.decode()
    assert set(base_in(html)) == {"2"} and len(base_in(html)) == 4  # interface, settings, two Remove buttons
    html = alice_client.get(reverse("version_detail", args=[pipeline.pk, 1])).content.decode()
    assert base_in(html) == ["2"]


def test_a_conflicting_edit_is_refused_with_her_input_kept(alice_client, pipeline, bob):
    url = reverse("step_edit", args=[pipeline.pk, "train"])
    data = edit_post_from_page(alice_client, url)
    assert data["base_version"] == "1"
    bob_edits(pipeline, bob, "train", command="python train.py --bob ${{inputs.data}} ${{outputs.model}}")

    data["command"] = ALICE_COMMAND
    data["code-0-content"] = "print('alice was here')\n"
    response = alice_client.post(url, data)
    html = response.content.decode()
    assert response.status_code == 409
    assert PipelineVersion.objects.filter(pipeline=pipeline).count() == 2
    assert "--bob" in latest_spec(pipeline).jobs["train"].command

    conflict = re.search(r'<div class="alert alert-danger" role="alert" id="conflict">.*?</div>', html, re.S).group(0)
    assert "Not saved: bob changed the same thing while you were editing" in conflict
    assert "You opened this form on v1" in conflict
    assert f'href="{reverse("version_detail", args=[pipeline.pk, 2])}"' in conflict
    assert f'href="{reverse("version_diff", args=[pipeline.pk, 2])}?against=1">See what changed</a>' in conflict
    assert f'href="{reverse("pipeline_versions", args=[pipeline.pk])}"' in conflict
    assert "Step train</strong>: changed its command" in conflict
    assert "press “Save step” again" in conflict
    # Her work is all still there, and the form now says it is based on v2.
    assert "--alice" in html and "print(&#x27;alice was here&#x27;)" in html
    assert base_in(html) == ["2"]

    # The deliberate second save goes through, over bob's change.
    again = form_data(html)
    assert again["command"] == ALICE_COMMAND and again["base_version"] == "2"
    response = alice_client.post(url, again, follow=True)
    assert response.redirect_chain[-1][0] == reverse("pipeline_detail", args=[pipeline.pk])
    assert "Saved step train." in response.content.decode()
    spec = latest_spec(pipeline)
    assert spec.jobs["train"].command == ALICE_COMMAND
    assert spec.files["code/train/train.py"] == b"print('alice was here')\n"
    assert pipeline.latest_version.number == 3


def test_an_edit_of_another_step_is_merged_and_said_so(alice_client, pipeline, bob):
    url = reverse("step_edit", args=[pipeline.pk, "train"])
    data = edit_post_from_page(alice_client, url)
    bob_edits(pipeline, bob, "prep", command="python prep.py --bob --out ${{outputs.data}}")
    data["command"] = ALICE_COMMAND
    response = alice_client.post(url, data, follow=True)
    html = response.content.decode()
    assert response.status_code == 200
    assert (
        "Saved step train. It is v3: merged with v2 by bob, saved while you were editing (step prep changed there)."
        " Your changes did not overlap, so both are kept." in html.replace("&#x27;", "'")
    )
    spec = latest_spec(pipeline)
    assert spec.jobs["train"].command == ALICE_COMMAND and "--bob" in spec.jobs["prep"].command


def test_a_step_removed_meanwhile_comes_back_only_on_the_second_save(alice_client, pipeline, bob):
    url = reverse("step_edit", args=[pipeline.pk, "train"])
    data = edit_post_from_page(alice_client, url)
    services.pipeline_step_remove(pipeline=pipeline, name="train", author=bob, base_version=1)
    data["command"] = ALICE_COMMAND
    response = alice_client.post(url, data)
    html = response.content.decode()
    assert response.status_code == 409
    assert "Step train</strong>: removed or renamed" in html and "--alice" in html
    assert "train" not in latest_spec(pipeline).jobs

    assert alice_client.post(url, form_data(html)).status_code == 302
    assert latest_spec(pipeline).jobs["train"].command == ALICE_COMMAND


def test_a_new_step_with_the_name_someone_just_used_conflicts(alice_client, pipeline, bob):
    score = services.pipeline_base_spec(pipeline=pipeline, number=1).jobs["prep"]
    services.pipeline_step_save(pipeline=pipeline, step=replace(score, name="score"), author=bob, base_version=1)
    response = alice_client.post(reverse("step_create", args=[pipeline.pk]), step_post(base_version="1"))
    assert response.status_code == 409
    assert "Step score</strong>: added" in response.content.decode()
    assert PipelineVersion.objects.filter(pipeline=pipeline).count() == 2


BAD_BASES = [None, "", "abc", "-1", "1.5", "99", "99999999999999999999"]


@pytest.mark.parametrize("bad", BAD_BASES)
def test_a_step_form_without_a_usable_base_is_a_form_error(alice_client, pipeline, bad):
    url = reverse("step_edit", args=[pipeline.pk, "train"])
    data = edit_post_from_page(alice_client, url)
    data["command"] = ALICE_COMMAND
    if bad is None:
        del data["base_version"]
    else:
        data["base_version"] = bad
    response = alice_client.post(url, data)
    html = response.content.decode()
    assert response.status_code == 400
    error = re.search(r'id="base-version-error">(.*?)</div>', html, re.S).group(1)
    assert "Nothing was saved." in error and "latest version (v1)" in error
    if bad is None:
        assert "does not say which version" in error
    assert "--alice" in html and base_in(html) == ["1"]
    assert PipelineVersion.objects.filter(pipeline=pipeline).count() == 1
    # Sent again as re-shown, it saves.
    assert alice_client.post(url, form_data(html)).status_code == 302
    assert latest_spec(pipeline).jobs["train"].command == ALICE_COMMAND


@pytest.mark.parametrize("bad", BAD_BASES)
def test_every_editing_post_answers_a_bad_base_with_400(alice_client, pipeline, bad):
    extra = {} if bad is None else {"base_version": bad}
    posts = [
        (reverse("step_create", args=[pipeline.pk]), step_post()),
        (reverse("pipeline_settings", args=[pipeline.pk]), {"name": "demo", "display_name": "d"}),
        (reverse("pipeline_interface", args=[pipeline.pk]), {"pin-TOTAL_FORMS": "0", "pin-INITIAL_FORMS": "0"}),
        (reverse("step_delete", args=[pipeline.pk, "train"]), {}),
        (reverse("version_restore", args=[pipeline.pk, 1]), {}),
    ]
    for url, data in posts:
        data = {k: v for k, v in data.items() if k != "base_version"}
        response = alice_client.post(url, {**data, **extra})
        assert response.status_code == 400, url
        assert 'id="base-version-error"' in response.content.decode(), url
    assert PipelineVersion.objects.filter(pipeline=pipeline).count() == 1


# --- the editor page and versions ------------------------------------------------------


def settings_post(**overrides) -> dict:
    return {"base_version": "1", "name": "demo", "display_name": "demo", "description": "", **overrides}


def test_conflicting_settings_keep_her_input(alice_client, pipeline, bob):
    base = services.pipeline_base_spec(pipeline=pipeline, number=1)
    services.pipeline_update(pipeline=pipeline, spec=replace(base, display_name="Bob's"), author=bob, base_version=1)
    url = reverse("pipeline_settings", args=[pipeline.pk])
    response = alice_client.post(url, settings_post(display_name="ALICE-DISPLAY"))
    html = response.content.decode()
    assert response.status_code == 409
    assert "The pipeline&#x27;s settings</strong>: changed" in html
    assert 'value="ALICE-DISPLAY"' in html
    assert latest_spec(pipeline).display_name == "Bob's"
    settings_form = re.search(r'action="[^"]*/settings/".*?</form>', html, re.S).group(0)
    assert base_in(settings_form) == ["2"]
    assert alice_client.post(url, settings_post(display_name="ALICE-DISPLAY", base_version="2")).status_code == 302
    assert latest_spec(pipeline).display_name == "ALICE-DISPLAY"


def test_a_new_pipeline_input_merges_with_a_step_edit(alice_client, pipeline, bob):
    bob_edits(pipeline, bob, "train", max_retries=2)
    interface = {
        "base_version": "1",
        "pin-TOTAL_FORMS": "2",
        "pin-INITIAL_FORMS": "1",
        "pin-0-name": "epochs",
        "pin-0-type": "integer",
        "pin-0-default": "3",
        "pin-1-name": "lr",
        "pin-1-type": "number",
        "pin-1-default": "0.01",
        "pout-TOTAL_FORMS": "0",
        "pout-INITIAL_FORMS": "0",
    }
    response = alice_client.post(reverse("pipeline_interface", args=[pipeline.pk]), interface, follow=True)
    assert "merged with v2 by bob" in response.content.decode()
    spec = latest_spec(pipeline)
    assert spec.inputs["lr"].default == 0.01 and spec.jobs["train"].max_retries == 2


def test_removing_a_step_someone_just_edited_is_refused(alice_client, pipeline, bob):
    bob_edits(pipeline, bob, "train", max_retries=2)
    url = reverse("step_delete", args=[pipeline.pk, "train"])
    response = alice_client.post(url, {"base_version": "1"})
    html = response.content.decode()
    assert response.status_code == 409
    assert "Step train was not removed" in html and "Step train</strong>: changed its retries" in html
    assert "train" in latest_spec(pipeline).jobs
    assert alice_client.post(url, {"base_version": "2"}).status_code == 302
    assert "train" not in latest_spec(pipeline).jobs


def test_restoring_over_a_newer_save_is_refused(alice_client, pipeline, bob):
    bob_edits(pipeline, bob, "train", max_retries=2)
    url = reverse("version_restore", args=[pipeline.pk, 1])
    assert base_in(alice_client.get(reverse("version_detail", args=[pipeline.pk, 1])).content.decode()) == ["2"]
    bob_edits(pipeline, bob, "prep", base=2, max_retries=1)  # while alice looks at v1
    response = alice_client.post(url, {"base_version": "2"})
    html = response.content.decode()
    assert response.status_code == 409
    assert "v1 was not restored" in html and "Step prep</strong>: changed its retries" in html
    assert PipelineVersion.objects.filter(pipeline=pipeline).count() == 3
    assert alice_client.post(url, {"base_version": "3"}).status_code == 302
    pipeline.refresh_from_db()
    assert pipeline.latest_version.content_hash == pipeline.versions.get(number=1).content_hash
