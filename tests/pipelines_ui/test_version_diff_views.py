"""The page comparing two versions of a pipeline: changed parts in words and a YAML diff."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from django.test import Client
from django.urls import reverse

from pipelines_ui import services
from pipelines_ui.models import PipelineVersion

XSS = "<script>alert(1)</script>"


def edit_step(pipeline, user, step: str, **changes) -> PipelineVersion:
    pipeline.refresh_from_db()
    base = pipeline.latest_version.number
    spec = services.pipeline_base_spec(pipeline=pipeline, number=base)
    edited = replace(spec.jobs[step], **changes)
    return services.pipeline_step_save(
        pipeline=pipeline, step=edited, author=user, original_name=step, base_version=base
    ).version


def diff_url(pipeline, number: int, against: object = None) -> str:
    url = reverse("version_diff", args=[pipeline.pk, number])
    return url if against is None else f"{url}?against={against}"


def diff_lines(html: str, cls: str) -> list[str]:
    return re.findall(rf'<span class="d-block {cls}">([^<]*)</span>', html)


@pytest.fixture
def alice_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def test_lists_changed_parts_and_the_yaml_diff(alice_client, pipeline, bob):
    edit_step(pipeline, bob, "train", command="python train.py --fast ${{inputs.data}} ${{outputs.model}}")
    response = alice_client.get(diff_url(pipeline, 2))
    html = response.content.decode()
    assert response.status_code == 200
    assert "compared with" in html and f'href="{reverse("version_detail", args=[pipeline.pk, 1])}"' in html
    parts = re.search(r'<ul class="list-group list-group-flush" id="changed-parts">(.*?)</ul>', html, re.S).group(1)
    assert "<strong>Step train</strong>: changed its command" in parts
    assert "prep" not in parts
    removed = diff_lines(html, "text-danger")
    added = diff_lines(html, "text-success")
    assert any("--epochs" in line and line.startswith("-") for line in removed)
    assert any("--fast" in line and line.startswith("+") for line in added)
    assert "+++ v2/components/train.yml" in html
    assert "bob" in html and "alice" in html  # both authors
    assert "read only" not in html  # the header knows alice may edit


def test_against_picks_the_other_version(alice_client, pipeline, bob):
    edit_step(pipeline, bob, "train", max_retries=2)
    edit_step(pipeline, bob, "prep", max_retries=3)
    html = alice_client.get(diff_url(pipeline, 3, against=1)).content.decode()
    assert "Step prep</strong>" in html and "Step train</strong>" in html
    default = alice_client.get(diff_url(pipeline, 3)).content.decode()
    assert "Step prep</strong>" in default and "Step train</strong>" not in default
    assert '<option value="1">v1</option>' in default and '<option value="2" selected>v2</option>' in default


def test_identical_versions_show_the_empty_state(alice_client, pipeline, bob):
    edit_step(pipeline, bob, "train", max_retries=2)
    html = alice_client.get(diff_url(pipeline, 2, against=2)).content.decode()
    assert "No differences" in html
    assert 'id="yaml-diff"' not in html and 'id="changed-parts"' not in html


def test_first_version_has_nothing_before_it(alice_client, pipeline):
    response = alice_client.get(diff_url(pipeline, 1))
    assert response.status_code == 200
    assert "v1 is the first version" in response.content.decode()


def test_user_text_is_escaped(alice_client, pipeline, bob):
    edit_step(pipeline, bob, "train", command=f"echo '{XSS}' ${{{{inputs.data}}}} ${{{{outputs.model}}}}")
    html = alice_client.get(diff_url(pipeline, 2)).content.decode()
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.parametrize("against", ["abc", "1.5", "99", "-1", "99999999999999999999"])
def test_bad_against_is_404(alice_client, pipeline, bob, against):
    edit_step(pipeline, bob, "train", max_retries=2)
    assert alice_client.get(diff_url(pipeline, 2, against=against)).status_code == 404


def test_unknown_version_is_404(alice_client, pipeline):
    assert alice_client.get(diff_url(pipeline, 7)).status_code == 404


def test_outsider_gets_404(client, pipeline, bob, charlie):
    edit_step(pipeline, bob, "train", max_retries=2)
    client.force_login(charlie)
    assert client.get(diff_url(pipeline, 2)).status_code == 404


def test_anonymous_is_sent_to_log_in(client, pipeline):
    response = client.get(diff_url(pipeline, 1))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_versions_list_and_detail_link_to_the_diff(alice_client, pipeline, bob):
    edit_step(pipeline, bob, "train", max_retries=2)
    listing = alice_client.get(reverse("pipeline_versions", args=[pipeline.pk])).content.decode()
    assert f'href="{diff_url(pipeline, 2)}">Compare with previous</a>' in listing
    assert f'href="{diff_url(pipeline, 1)}"' not in listing
    detail = alice_client.get(reverse("version_detail", args=[pipeline.pk, 2])).content.decode()
    assert f'href="{diff_url(pipeline, 2)}">Compare with previous</a>' in detail


def test_a_huge_yaml_diff_is_cut(alice_client, pipeline, bob):
    # A step's command may be up to the 1 MiB YAML limit: two versions with long, different
    # commands made a diff line (and an HTML span) per YAML line, with no bound.
    edit_step(pipeline, bob, "train", command="\n".join(f"echo old {i}" for i in range(20_000)))
    edit_step(pipeline, bob, "train", command="\n".join(f"echo new {i}" for i in range(20_000)))
    response = alice_client.get(diff_url(pipeline, 3, against=2))
    html = response.content.decode()
    assert response.status_code == 200
    shown = diff_lines(html, "text-danger") + diff_lines(html, "text-success")
    assert 0 < len(shown) <= 2_000  # 40,000 lines differ
    assert "too long to show here" in html
