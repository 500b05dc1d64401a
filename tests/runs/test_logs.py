from __future__ import annotations

import pytest
from django.urls import reverse

from runs.models import LogChunk, StepState
from runs.selectors import log_page
from tests.runs.conftest import set_step

pytestmark = pytest.mark.django_db


@pytest.fixture
def long_log(run):
    """1,200 lines in chunks of 7 lines: line N reads "line N"."""
    step = set_step(run, "train", state=StepState.RUNNING, attempt=1)
    seq = 0
    while seq < 1200:
        count = min(7, 1200 - seq)
        text = "\n".join(f"line {n}" for n in range(seq, seq + count))
        LogChunk.objects.create(step_run=step, attempt=1, seq=seq, line_count=count, text=text)
        seq += count
    return step


def get(client, run, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return client.get(reverse("step_log", args=[run.pk, "train"]) + ("?" + query if query else "")).json()


def test_without_parameters_the_tail_comes_back(long_log, run, client, alice):
    client.force_login(alice)
    page = get(client, run)
    assert page["total"] == 1200
    assert len(page["lines"]) == 500
    assert page["lines"][0] == "line 700" and page["lines"][-1] == "line 1199"
    assert page["first_seq"] == 700 and page["next_seq"] == 1200


def test_after_seq_returns_lines_from_that_number_across_chunk_boundaries(long_log, run, client, alice):
    client.force_login(alice)
    page = get(client, run, after_seq=10, limit=20)
    assert page["lines"] == [f"line {n}" for n in range(10, 30)]
    assert page["next_seq"] == 30 and page["total"] == 1200
    page = get(client, run, after_seq=page["next_seq"], limit=3)
    assert page["lines"] == ["line 30", "line 31", "line 32"]


def test_after_seq_at_the_end_is_empty(long_log, run, client, alice):
    client.force_login(alice)
    assert get(client, run, after_seq=1200) == {"lines": [], "first_seq": 1200, "next_seq": 1200, "total": 1200}
    assert get(client, run, after_seq=5000)["lines"] == []


def test_paging_with_after_seq_reads_every_line_once(long_log, run, client, alice):
    client.force_login(alice)
    seen, seq = [], 0
    while True:
        page = get(client, run, after_seq=seq, limit=333)
        if not page["lines"]:
            break
        seen.extend(page["lines"])
        seq = page["next_seq"]
    assert seen == [f"line {n}" for n in range(1200)]


def test_before_seq_loads_earlier_lines(long_log, run, client, alice):
    client.force_login(alice)
    page = get(client, run, before_seq=700, limit=500)
    assert page["first_seq"] == 200 and page["next_seq"] == 700
    assert page["lines"][0] == "line 200" and page["lines"][-1] == "line 699"
    page = get(client, run, before_seq=200, limit=500)
    assert page["first_seq"] == 0 and page["lines"][-1] == "line 199" and len(page["lines"]) == 200


def test_bad_parameters_fall_back_to_the_tail(long_log, run, client, alice):
    client.force_login(alice)
    page = get(client, run, after_seq="abc", limit="-5")
    assert page["next_seq"] == 1200


def test_an_empty_log(run):
    step = set_step(run, "prep", state=StepState.QUEUED, attempt=1)
    page = log_page(step)
    assert page.as_json() == {"lines": [], "first_seq": 0, "next_seq": 0, "total": 0}


def test_empty_lines_are_kept(run):
    step = set_step(run, "prep", state=StepState.RUNNING, attempt=1)
    LogChunk.objects.create(step_run=step, attempt=1, seq=0, line_count=3, text="a\n\nc")
    assert log_page(step, after_seq=1).lines == ["", "c"]


def test_the_run_page_shows_only_the_tail_and_offers_earlier_lines(long_log, run, client, alice):
    client.force_login(alice)
    html = client.get(reverse("run_step", args=[run.pk, "train"])).content.decode()
    assert html.count('class="log-line"') == 500
    assert 'data-first-seq="700"' in html and 'data-next-seq="1200"' in html
    assert "line 699<" not in html and "line 700<" in html
    assert 'id="log-earlier"' in html
