"""Mini-batches by partition_keys: the grouping on plain data, then the driver on a CSV file."""

from __future__ import annotations

import shlex

import pytest

from stepwise.parallel.driver import DriverError, make_batches, parse_args
from stepwise.parallel.tables import missing_keys, partition_label, partition_rows
from stepwise.spec import render_command
from stepwise.spec.model import ParallelSettings
from stepwise.spec.parallel import driver_command

from .test_driver import drive, make_job, rows

SALES = """\
store,brand,week,qty
1,tropicana,1,10
1,dominicks,1,4
2,tropicana,1,7
1,tropicana,2,12
2,tropicana,2,9
1,dominicks,2,5
"""


def test_rows_sharing_the_key_values_form_one_partition_in_first_seen_order():
    keys = [(1, "t"), (1, "d"), (2, "t"), (1, "t"), (2, "t"), (1, "d")]
    assert partition_rows(keys) == [((1, "t"), [0, 3]), ((1, "d"), [1, 5]), ((2, "t"), [2, 4])]


def test_blank_cells_group_together_whether_read_as_nan_or_empty():
    nan = float("nan")
    assert partition_rows([(nan,), ("",), (float("nan"),), ("x",)]) == [(("",), [0, 1, 2]), (("x",), [3])]


def test_missing_keys_and_labels():
    assert missing_keys(["store", "brand"], ["brand", "region", "day"]) == ["region", "day"]
    assert partition_label(["store", "brand"], (1, "tropicana")) == "store=1, brand=tropicana"


def test_the_driver_makes_one_mini_batch_per_partition(tmp_path):
    (tmp_path / "sales.csv").write_text(SALES)
    batches = make_batches(tmp_path / "sales.csv", "", ["store", "brand"])
    assert [(b.label, b.items) for b in batches] == [
        ("store=1, brand=tropicana", 2),
        ("store=1, brand=dominicks", 2),
        ("store=2, brand=tropicana", 2),
    ]
    # The partition's rows, in file order (a DataFrame: pandas is pinned).
    assert list(batches[0].payload["qty"]) == [10, 12]


def test_partition_keys_take_effect_over_a_mini_batch_size(tmp_path):
    (tmp_path / "sales.csv").write_text(SALES)
    assert len(make_batches(tmp_path / "sales.csv", "1", ["store"])) == 2


@pytest.mark.parametrize(
    ("data", "keys", "message"),
    [
        ("sales.csv", ["store", "region"], "partition_keys region not among the columns of sales.csv"),
        (".", ["store"], "must be a CSV file or an MLTable folder, not a folder of files"),
    ],
)
def test_partitions_the_driver_cannot_make_are_refused(tmp_path, data, keys, message):
    (tmp_path / "sales.csv").write_text(SALES)
    with pytest.raises(DriverError, match=message):
        make_batches(tmp_path / data, "", keys)


def test_a_partitioned_job_runs_and_appends_each_partitions_rows(tmp_path):
    script = """\
        def run(mini_batch):
            records = mini_batch.to_dict("records")
            total = sum(int(r["qty"]) for r in records)
            return [f"{r['store']} {r['brand']} week {r['week']}: {total}" for r in records]
    """
    job = make_job(tmp_path, script, files=0)
    (job / "sales.csv").write_text(SALES)
    result = drive(job, "--partition-key", "store", "--partition-key", "brand", data="sales.csv")
    assert result.returncode == 0, result.stderr
    assert "mini-batch 2/3 done (store=1, brand=dominicks): 2 results" in result.stdout
    assert rows(job)[:2] == ["1 tropicana week 1: 22", "1 tropicana week 2: 22"]


def test_the_spec_command_passes_the_keys_and_leaves_out_the_ignored_size():
    settings = ParallelSettings(
        input_data="sales", entry_script="score.py", mini_batch_size="10", partition_keys=["store", "brand name"]
    )
    words = shlex.split(render_command(driver_command(settings), inputs={"sales": "/s.csv"}, outputs={}))
    args, _program = parse_args(words[3:])
    assert args.partition_keys == ["store", "brand name"]
    assert args.mini_batch_size == ""
