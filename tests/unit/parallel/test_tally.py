from __future__ import annotations

from stepwise.parallel.tally import Tally


def test_a_failed_mini_batch_counts_all_its_items():
    t = Tally(total=20, mini_batch_error_threshold=1)
    t.succeeded(0, "a", items=5, results=5)
    failure = t.failed(6, "f_07.txt", items=5, reason="ValueError: bad")
    assert (t.done, t.failed_items, t.results) == (2, 5, 5)
    assert str(failure) == "mini-batch 7/20 (f_07.txt): ValueError: bad"
    assert t.exceeded() is None


def test_more_failed_mini_batches_than_the_threshold_stop_the_job():
    t = Tally(total=4, mini_batch_error_threshold=0)
    t.succeeded(0, "a", items=1, results=1)
    assert t.exceeded() is None
    t.failed(1, "b", items=1, reason="boom")
    assert t.exceeded() == "1 failed mini-batch, more than mini_batch_error_threshold 0"


def test_fewer_results_than_items_fail_the_mini_batch_and_the_missing_items():
    t = Tally(total=2, error_threshold=2)
    failure = t.succeeded(0, "rows 1-5", items=5, results=3)
    assert failure is not None and "returned 3 results for 5 items" in failure.reason
    assert (t.failed_items, t.results, len(t.failures)) == (2, 3, 1)
    assert t.exceeded() is None
    t.succeeded(1, "rows 6-10", items=5, results=4)
    assert t.exceeded() == "3 failed items, more than error_threshold 2"


def test_more_results_than_items_count_as_the_items():
    t = Tally(total=1)
    assert t.succeeded(0, "a", items=2, results=5) is None
    assert t.results == 2


def test_minus_one_ignores_every_failure():
    t = Tally(total=3, error_threshold=-1, mini_batch_error_threshold=-1)
    for i in range(3):
        t.failed(i, str(i), items=10, reason="boom")
    assert t.exceeded() is None
    assert t.failed_items == 30
