from __future__ import annotations

import gzip
import itertools
from datetime import timedelta
from unittest import mock

import pytest
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from runs import artifacts, gc, logs
from runs.executor import LINE_TRUNCATED, LineSplitter
from runs.models import Artifact, AttemptLog, LogChunk, StepRun, StepState
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


def get(client, run, step="train", **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return client.get(reverse("step_log", args=[run.pk, step]) + ("?" + query if query else "")).json()


def download(client, run, step="train", mode="1") -> bytes:
    response = client.get(reverse("step_log", args=[run.pk, step]), {"download": mode})
    assert response.status_code == 200
    return b"".join(response.streaming_content)


# ---- paging a log the database holds whole -----------------------------------------------------


def test_without_parameters_the_tail_comes_back(long_log, run, client, alice):
    client.force_login(alice)
    page = get(client, run)
    assert page["total"] == 1200
    assert len(page["lines"]) == 500
    assert page["lines"][0] == "line 700" and page["lines"][-1] == "line 1199"
    assert page["first_seq"] == 700 and page["next_seq"] == 1200
    assert page["omitted"] == []
    assert page["download"].endswith(reverse("step_log", args=[run.pk, "train"]) + "?download=1")


def test_after_seq_returns_lines_from_that_number_across_chunk_boundaries(long_log, run, client, alice):
    client.force_login(alice)
    page = get(client, run, after_seq=10, limit=20)
    assert page["lines"] == [f"line {n}" for n in range(10, 30)]
    assert page["next_seq"] == 30 and page["total"] == 1200
    page = get(client, run, after_seq=page["next_seq"], limit=3)
    assert page["lines"] == ["line 30", "line 31", "line 32"]


def test_after_seq_at_the_end_is_empty(long_log, run, client, alice):
    client.force_login(alice)
    page = get(client, run, after_seq=1200)
    assert {k: page[k] for k in ("lines", "first_seq", "next_seq", "total")} == {
        "lines": [],
        "first_seq": 1200,
        "next_seq": 1200,
        "total": 1200,
    }
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
    assert page.as_json() == {"lines": [], "first_seq": 0, "next_seq": 0, "total": 0, "omitted": []}


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
    assert "log-omitted" not in html


def test_the_download_of_a_log_the_database_holds_whole_streams_it_as_text_or_gzip(long_log, run, client, alice):
    client.force_login(alice)
    expected = "".join(f"line {n}\n" for n in range(1200)).encode()
    assert download(client, run) == expected
    response = client.get(reverse("step_log", args=[run.pk, "train"]), {"download": "gz"})
    assert response["Content-Type"] == "application/gzip"
    assert response["Content-Disposition"] == f'attachment; filename="run-{run.pk}-train.log.gz"'
    assert gzip.decompress(b"".join(response.streaming_content)) == expected


# ---- splitting the output into lines -------------------------------------------------------


def reference_lines(data: bytes, limit: int) -> list[str]:
    """Line by line, as the worker once decoded them (for outputs without over-long lines)."""
    pieces = data.split(b"\n")[:-1]
    return [p.decode("utf-8", "replace").rstrip("\r").replace("\x00", "\ufffd")[:limit] for p in pieces]


OUTPUT = (
    "plain\nwindows\r\n\nnul: a\x00b\ncafé ünïcode ✓\n".encode()
    + b"latin-1: caf\xe9, broken: \xc3\x28, cut: \xe2\x82\nlone: \xff\xfe\n"
    + b"".join(b"row %d\n" % i for i in range(300))
)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 65536])
def test_the_splitter_gives_the_same_lines_however_the_output_is_cut_into_reads(size):
    splitter = LineSplitter(4096)
    lines = []
    for start in range(0, len(OUTPUT), size):
        lines += splitter.feed(OUTPUT[start : start + size])
    assert lines + splitter.close() == reference_lines(OUTPUT, 4096)


def test_the_splitter_cuts_and_marks_a_line_that_never_ends_and_drops_its_rest():
    splitter = LineSplitter(10)
    lines = splitter.feed(b"short\n" + b"x" * 25)
    lines += splitter.feed(b"y" * 30)
    lines += splitter.feed(b"z\nafter\npartial")
    assert lines + splitter.close() == ["short", "x" * 10 + LINE_TRUNCATED, "after", "partial"]


def test_the_splitter_cuts_a_whole_long_line_at_the_limit():
    assert LineSplitter(5).feed(b"abcdefgh\nok\n") == ["abcde", "ok"]


# ---- the head and tail the database keeps ----------------------------------------------------


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(logs, "CHUNK_LINES", 5)


def recorder_for(step: StepRun, tmp_path, *, head: int = 10, tail: int = 20) -> logs.AttemptLogRecorder:
    step.refresh_from_db()
    return logs.AttemptLogRecorder(step, tmp_path / f"{step.name}-{step.attempt}.log.gz", head=head, tail=tail)


def record(recorder: logs.AttemptLogRecorder, count: int, *, batch: int = 7, start: int = 0) -> list[dict]:
    """`count` lines, "line N" from `start`, stored after each batch as a worker's flushes would."""
    messages = []
    numbers = iter(range(start, start + count))
    while batch_lines := [f"line {n}" for n in itertools.islice(numbers, batch)]:
        recorder.add(batch_lines)
        messages += recorder.store(now=0)
    # The attempt's accounting, as the worker's flush writes it beside the rows.
    StepRun.objects.filter(pk=recorder.step_run.pk).update(log_lines=recorder.next_seq)
    return messages


def stored_lines(step: StepRun) -> int:
    return sum(LogChunk.objects.filter(step_run=step, omitted=False).values_list("line_count", flat=True))


def test_the_database_keeps_the_head_and_a_rolling_tail_with_a_row_for_the_lines_between(run, tmp_path, small_chunks):
    step = set_step(run, "train", state=StepState.RUNNING, attempt=1)
    recorder = recorder_for(step, tmp_path)
    most = 0
    for part in range(100):
        record(recorder, 10, start=part * 10)
        most = max(most, stored_lines(step))
    # The head, the tail and at most one row's worth of lines on its way out, all along.
    assert most <= 10 + 20 + logs.CHUNK_LINES
    kept = list(LogChunk.objects.filter(step_run=step).values_list("seq", "line_count", "omitted"))
    gap = [(seq, count) for seq, count, omitted in kept if omitted]
    assert len(gap) == 1 and gap[0][0] == 10
    first_tail = gap[0][0] + gap[0][1]
    assert 20 <= 1000 - first_tail <= 20 + logs.CHUNK_LINES
    page = log_page(step)
    assert page.total == 1000
    assert page.lines[-1] == "line 999" and page.first_seq == first_tail
    assert page.omitted == [(10, first_tail - 10)] and page.omitted_before == first_tail - 10


def test_pages_stop_at_omitted_lines_and_start_after_them(run, tmp_path, small_chunks, client, alice):
    step = set_step(run, "train", state=StepState.RUNNING, attempt=1)
    record(recorder_for(step, tmp_path), 1000)
    ((gap_seq, gap_count),) = log_page(step).omitted
    client.force_login(alice)

    head = get(client, run, after_seq=0)
    assert head["lines"] == [f"line {n}" for n in range(10)] and head["next_seq"] == 10
    # Asked for omitted lines, a client gets the lines after them, numbered where they are.
    after = get(client, run, after_seq=head["next_seq"])
    assert after["first_seq"] == gap_seq + gap_count == 1000 - len(after["lines"])
    assert after["lines"] == [f"line {n}" for n in range(after["first_seq"], 1000)]
    assert after["omitted"] == [{"seq": 10, "count": gap_count, "text": logs.omitted_text(gap_count)}]
    assert logs.omitted_text(gap_count) == f"… {gap_count:,} lines omitted: download the full log"
    # And going back from the tail, the lines before them.
    earlier = get(client, run, before_seq=after["first_seq"])
    assert earlier["lines"] == head["lines"] and earlier["next_seq"] == 10


def test_a_page_read_while_the_worker_drops_rows_starts_after_them(run):
    step = set_step(run, "train", state=StepState.RUNNING, attempt=1)
    LogChunk.objects.create(step_run=step, attempt=1, seq=0, line_count=2, text="line 0\nline 1")
    # Read before the worker's last compaction: rows 7 to 9 are gone, the `omitted` row says 2 to 6.
    LogChunk.objects.create(step_run=step, attempt=1, seq=2, line_count=5, text="", omitted=True)
    LogChunk.objects.create(step_run=step, attempt=1, seq=10, line_count=2, text="line 10\nline 11")
    page = log_page(step, after_seq=7)
    assert (page.first_seq, page.lines, page.next_seq) == (10, ["line 10", "line 11"], 12)
    LogChunk.objects.create(step_run=step, attempt=1, seq=7, line_count=1, text="line 7")
    page = log_page(step, after_seq=7)
    assert (page.first_seq, page.lines, page.next_seq) == (7, ["line 7"], 8)


def test_the_run_page_marks_the_omitted_lines_and_links_the_full_log(run, tmp_path, small_chunks, client, alice):
    step = set_step(run, "train", state=StepState.RUNNING, attempt=1)
    record(recorder_for(step, tmp_path, head=3, tail=5), 1000)
    ((_seq, gap_count),) = log_page(step).omitted
    client.force_login(alice)
    html = client.get(reverse("run_step", args=[run.pk, "train"])).content.decode()
    download_url = reverse("step_log", args=[run.pk, "train"]) + "?download=1"
    marker = f'… {gap_count:,} lines omitted: <a href="{download_url}">download the full log</a>'
    # Above the log, and in it right before the tail, which is all the page shows of it.
    assert html.count(marker) == 2
    assert f'<div class="log-omitted" data-count="{gap_count}">{marker}</div><div class="log-line">' in html
    # The view starts at the head's end: "load earlier" asks for the lines before the marker.
    assert 'data-first-seq="3"' in html
    assert "1,000 lines" in html


def test_lines_are_numbered_across_attempts_and_each_attempt_keeps_its_own_head_and_tail(
    run, tmp_path, small_chunks, client, alice
):
    step = set_step(run, "train", state=StepState.RUNNING, attempt=1)
    record(recorder_for(step, tmp_path), 100)
    step = set_step(run, "train", attempt=2)
    record(recorder_for(step, tmp_path), 100, start=100)
    page = log_page(step)
    assert page.total == 200
    assert [seq for seq, _count in page.omitted] == [10, 110]
    client.force_login(alice)
    second_head = get(client, run, after_seq=100)
    assert second_head["lines"] == [f"line {n}" for n in range(100, 110)]


def test_live_messages_carry_the_head_whole_and_past_it_the_newest_lines_with_what_they_skip(run, tmp_path):
    step = set_step(run, "train", state=StepState.RUNNING, attempt=1)
    recorder = recorder_for(step, tmp_path, head=10, tail=20)
    recorder.add([f"line {n}" for n in range(15)])
    head, tail = recorder.store(now=0)
    assert (head["seq"], head["lines"], head["skipped"]) == (0, [f"line {n}" for n in range(10)], 0)
    assert (tail["seq"], tail["lines"], tail["skipped"]) == (10, [f"line {n}" for n in range(10, 15)], 0)
    recorder.add([f"line {n}" for n in range(15, 500)])
    (message,) = recorder.store(now=1)
    assert message["seq"] == 480 and message["lines"][-1] == "line 499" and len(message["lines"]) == 20
    assert message["skipped"] == 480 - 15


def test_fast_output_past_the_head_is_stored_once_a_second_and_slow_output_at_once(run, tmp_path):
    step = set_step(run, "train", state=StepState.RUNNING, attempt=1)
    recorder = recorder_for(step, tmp_path, head=10, tail=20)
    recorder.add([f"line {n}" for n in range(10)])
    assert recorder.due(now=0)  # head lines go at once
    recorder.store(now=0)
    recorder.add(["slow"] * logs.FAST_LINES)
    assert recorder.due(now=0.1)
    recorder.store(now=0.1)
    recorder.add(["fast"] * (logs.FAST_LINES + 1))
    assert not recorder.due(now=0.2) and not recorder.due(now=1.0)
    assert recorder.due(now=0.1 + logs.TAIL_STORE_INTERVAL_S)
    # Waiting, it holds only what it could still store: the newest lines, never the whole flood.
    recorder.add(["flood"] * 100_000)
    assert len(recorder.pending) <= 2 * max(20, logs.CHUNK_LINES) + 1


def test_a_million_lines_cost_a_few_statements_per_store_not_one_per_line(run, tmp_path):
    step = set_step(run, "train", state=StepState.RUNNING, attempt=1)
    recorder = recorder_for(step, tmp_path, head=1000, tail=1000)
    lines = [f"line {n}" for n in range(1000)]
    with CaptureQueriesContext(connection) as queries:
        for second in range(1000):
            recorder.add(lines)
            if second % 100 == 99:  # fast output: one store a second, ten stores in all
                recorder.store(now=second)
    assert recorder.next_seq == 1_000_000
    writes = [q["sql"] for q in queries.captured_queries if "runs_logchunk" in q["sql"]]
    assert len(writes) <= 10 * 4
    assert stored_lines(step) <= 2000 + logs.CHUNK_LINES


# ---- the whole log ---------------------------------------------------------------------------


def test_the_whole_log_of_an_attempt_with_omitted_lines_is_stored_and_downloads_in_order(
    run, tmp_path, small_chunks, client, alice
):
    step = set_step(run, "train", state=StepState.RUNNING, attempt=1)
    recorder = recorder_for(step, tmp_path)
    record(recorder, 5000)
    archive = recorder.archive()
    assert not recorder.path.exists()
    assert archive == AttemptLog.objects.get(step_run=step)
    assert (archive.attempt, archive.first_seq, archive.line_count) == (1, 0, 5000)
    expected = "".join(f"line {n}\n" for n in range(5000)).encode()
    assert archive.size == len(expected)
    client.force_login(alice)
    assert download(client, run) == expected
    assert gzip.decompress(download(client, run, mode="gz")) == expected


def test_a_log_the_database_holds_whole_is_not_stored_again(run, tmp_path, small_chunks):
    step = set_step(run, "train", state=StepState.RUNNING, attempt=1)
    recorder = recorder_for(step, tmp_path)
    record(recorder, 30)
    assert recorder.archive() is None
    assert not AttemptLog.objects.exists() and not Artifact.objects.exists()
    assert not recorder.path.exists()


def test_the_download_joins_stored_attempts_and_attempts_only_the_database_holds(
    run, tmp_path, small_chunks, client, alice
):
    step = set_step(run, "train", state=StepState.RUNNING, attempt=1)
    first = recorder_for(step, tmp_path)
    record(first, 100)
    # The first attempt's worker died: its whole log was never stored.
    step = set_step(run, "train", attempt=2)
    second = recorder_for(step, tmp_path)
    record(second, 100, start=100)
    second.archive()
    (gap_seq, gap_count), _ = log_page(step).omitted
    client.force_login(alice)
    text = download(client, run).decode().split("\n")
    omitted = f"… {gap_count} lines omitted: the whole log of attempt 1 was not stored"
    assert text[:11] == [f"line {n}" for n in range(10)] + [omitted]
    assert text[11 : 11 + 100 - gap_seq - gap_count] == [f"line {n}" for n in range(gap_seq + gap_count, 100)]
    assert text[-101:] == [f"line {n}" for n in range(100, 200)] + [""]
    assert gzip.decompress(download(client, run, mode="gz")).decode().split("\n") == text


def test_a_log_file_that_cannot_be_written_costs_the_whole_log_not_the_step(run, tmp_path, small_chunks):
    step = set_step(run, "train", state=StepState.RUNNING, attempt=1)
    (tmp_path / "a-file").write_text("")
    recorder = logs.AttemptLogRecorder(step, tmp_path / "a-file" / "train-1.log.gz", head=10, tail=20)
    record(recorder, 1000)
    assert recorder.archive() is None
    page = log_page(step)
    assert page.total == 1000 and page.lines[-1] == "line 999" and page.omitted_total


def test_gc_keeps_a_stored_log_while_its_step_run_exists(run, tmp_path, small_chunks):
    step = set_step(run, "train", state=StepState.RUNNING, attempt=1)
    recorder = recorder_for(step, tmp_path)
    record(recorder, 1000)
    archive = recorder.archive()
    Artifact.objects.update(created_at=timezone.now() - gc.GRACE - timedelta(minutes=1))
    assert gc.collect(dry_run=False).artifacts == []
    assert artifacts.artifact_intact(archive.artifact, verify_content=True)

    run.delete()
    assert gc.collect(dry_run=False).artifacts == [archive.artifact.sha256]
    assert not Artifact.objects.exists()


def test_a_log_download_whose_first_query_fails_is_an_error_page_not_a_short_200(long_log, run, client, alice):
    client.force_login(alice)
    client.raise_request_exception = False
    failing = mock.patch.object(AttemptLog.objects, "filter", side_effect=DatabaseError("connection lost"))
    with failing:
        response = client.get(reverse("step_log", args=[run.pk, "train"]), {"download": "1"})
    assert response.status_code == 500 and not response.streaming


def test_a_log_file_is_made_at_the_first_line_and_a_silent_attempt_makes_none(run, tmp_path):
    step = set_step(run, "train", state=StepState.RUNNING, attempt=1)
    recorder = recorder_for(step, tmp_path)
    assert not recorder.path.exists()
    recorder.add([])
    assert not recorder.path.exists()
    assert recorder.archive() is None and not recorder.path.exists()

    talking = recorder_for(step, tmp_path)
    talking.add(["hello"])
    assert talking.path.exists()
    assert talking.archive().line_count == 1  # never stored in the database: archived whole
    assert not talking.path.exists()
