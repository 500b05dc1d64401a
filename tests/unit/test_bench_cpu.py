"""The bench's CPU accounting (bench/harness.py): what the load figure says the cores went to."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.harness import children_cpu, process_cpu

BUSY = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"


def test_a_reaped_childs_cpu_counts_as_its_parents_children_not_as_its_own():
    own_before, reaped_before = process_cpu(os.getpid())
    children_before = children_cpu()
    subprocess.run([sys.executable, "-c", BUSY], check=True)
    own_after, reaped_after = process_cpu(os.getpid())
    # /proc counts in clock ticks (10 ms): the 0.3 s the child burned, give or take a few.
    assert reaped_after - reaped_before >= 0.25
    assert children_cpu() - children_before >= 0.25
    assert own_after - own_before < 0.25


def test_a_live_childs_cpu_is_its_own_until_it_is_reaped():
    child = subprocess.Popen([sys.executable, "-c", BUSY + "\ninput()"], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while process_cpu(child.pid)[0] < 0.25 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process_cpu(child.pid)[0] >= 0.25
    finally:
        child.communicate(b"\n", timeout=10)
