"""The README's States section lists exactly the edges of the one transition table."""

from __future__ import annotations

import re
from pathlib import Path

from stepwise.states import RUN_TRANSITIONS, STEP_TRANSITIONS

README = Path(__file__).resolve().parents[2] / "README.md"


def documented(heading: str) -> dict[str, frozenset[str]]:
    section = README.read_text().split("\n## States\n")[1].split("\n## ")[0]
    table = section.split(f"| {heading} | may go to |\n| --- | --- |\n")[1].split("\n\n")[0]
    edges = {}
    for row in table.splitlines():
        old, new = re.fullmatch(r"\| (\w+) \| ([\w, ]+) \|", row).groups()
        edges[old] = frozenset(new.split(", "))
    return edges


def test_the_readme_lists_every_step_edge_and_no_other():
    assert documented("a step run in") == {str(k): frozenset(map(str, v)) for k, v in STEP_TRANSITIONS.items()}


def test_the_readme_lists_every_run_edge_and_no_other():
    assert documented("a run in") == {str(k): frozenset(map(str, v)) for k, v in RUN_TRANSITIONS.items()}
