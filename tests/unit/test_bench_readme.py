"""The README's Performance table is generated from a committed bench result, never typed."""

from __future__ import annotations

import pytest

from bench import readme

RESULT = {
    "started_at": "2026-12-04T18:40:00+00:00",
    "duration_s": 151.2,
    "machine": {"cpu": "CPU", "cores": 2, "ram_gib": 23.5, "os": "Linux", "python": "3.11.7", "git": "abc1234"},
    "options": {"quick": True, "failed": []},
    "results": [
        {
            "figure": "chain50",
            "label": "chain50, created -> finished",
            "value": 1.55,
            "unit": "s",
            "floor": 0.784,
            "ratio": 1.977,
            "target": "<= 1.15x floor",
            "verdict": "MISS",
            "samples": [1.5, 1.55, 1.6],
            "details": {},
        },
        {
            "figure": "recovery",
            "label": "recovery: SIGKILLed worker -> attempt failed as worker lost",
            "value": 16.9,
            "unit": "s",
            "floor": None,
            "ratio": None,
            "target": "< 60 s",
            "verdict": "PASS",
            "samples": [16.1, 16.9, 18.2],
            "details": {"rounds": 3, "spread": [16.1, 18.2]},
        },
    ],
}


def test_the_table_names_its_source_and_shows_medians_with_their_spread():
    text = readme.table([("bench/results/20261204T184000Z-abc1234.json", RESULT)])
    assert text.startswith("Generated from `bench/results/20261204T184000Z-abc1234.json`: CPU, 2 cores")
    assert "git abc1234" in text and "--quick" in text
    assert "| chain50, created -> finished | 1.55 s | 0.784 s | 1.98x | <= 1.15x floor | MISS |" in text
    assert "| 16.9 s (16.1 to 18.2, median of 3) |" in text


def test_a_figure_missing_from_the_newest_result_comes_from_an_older_one_which_is_named():
    newest = {**RESULT, "results": [{**RESULT["results"][0], "figure": "chain50"}]}
    older = {
        **RESULT,
        "options": {"quick": False},
        "results": [
            {**RESULT["results"][0], "figure": "chain50", "value": 9.0},
            {**RESULT["results"][1], "figure": "recovery"},
        ],
    }
    text = readme.table([("new.json", newest), ("old.json", older)])
    assert "| chain50, created -> finished | 1.55 s |" in text and "9.00 s" not in text
    assert "recovery: not in that result, from `old.json`" in text
    assert "| 16.9 s (16.1 to 18.2, median of 3) |" in text


def test_rewrite_replaces_only_what_is_between_the_markers():
    before = f"intro\n{readme.BEGIN}\nold table\n{readme.END}\nafter\n"
    assert readme.rewrite(before, "new table") == f"intro\n{readme.BEGIN}\nnew table\n{readme.END}\nafter\n"
    with pytest.raises(SystemExit):
        readme.rewrite("no markers", "new table")


def test_the_readme_table_is_the_one_generated_from_the_newest_committed_result():
    assert readme.committed_results(), "no bench result committed under bench/results/"
    assert readme.main(["--check"]) == 0, "run `python -m bench.readme` and commit README.md"


def test_the_engine_figures_of_the_newest_postgresql_result_follow_the_sqlite_table():
    postgres = {**RESULT, "machine": {**RESULT["machine"], "database": "PostgreSQL 15.5"}}
    postgres["results"] = [{**RESULT["results"][0], "value": 2.5}, RESULT["results"][1]]
    sqlite = {**RESULT, "machine": {**RESULT["machine"], "database": "SQLite 3.40.1 (WAL)"}}
    text = readme.generated([("pg.json", postgres), ("sqlite.json", sqlite)])
    first, _, second = text.partition("On PostgreSQL:")
    assert first.startswith("Generated from `sqlite.json`") and "| 1.55 s |" in first
    assert "Generated from `pg.json`" in second and "| 2.50 s |" in second
    assert "recovery" not in second  # only the engine's own figures
    assert readme.generated([("sqlite.json", sqlite)]) == readme.table([("sqlite.json", sqlite)])
