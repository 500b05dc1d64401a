"""Results: one row per figure, printed as a table and written as JSON under var/bench/."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path


@dataclass
class Result:
    figure: str  # the group it belongs to: chain50, fan50, live, ...
    label: str  # what the row shows
    value: float
    unit: str  # "s", "ms", "x", "steps/s", "queries", "KiB"
    floor: float | None = None  # the same work without Stepwise, measured in the same run
    target: str = ""  # as printed, e.g. "<= 1.15x floor"
    ok: bool | None = None  # None: no target
    samples: list[float] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.floor is None or not self.floor:
            return None
        return self.value / self.floor


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit in ("queries", "runs", "steps", "events"):
        text = f"{value:,.0f}"
    elif unit == "KiB":
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return f"{text} {unit}".strip()


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("PASS" if ok else "MISS")


def table(results: list[Result], machine: dict[str, object]) -> str:
    header = ("Figure", "Value", "Floor", "Ratio", "Target", "")
    rows = [
        (
            r.label,
            _fmt(r.value, r.unit),
            _fmt(r.floor, r.unit),
            f"{r.ratio:.2f}x" if r.ratio is not None else "-",
            r.target or "-",
            verdict(r.ok),
        )
        for r in results
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [describe_machine(machine), ""]
    lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        lines.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    judged = [r for r in results if r.ok is not None]
    missed = [r.label for r in judged if not r.ok]
    lines.append("")
    lines.append(
        f"{len(judged) - len(missed)}/{len(judged)} targets met" + (f"; missed: {', '.join(missed)}" if missed else "")
    )
    return "\n".join(lines)


def describe_machine(m: dict[str, object]) -> str:
    return (
        f"{m.get('cpu')}, {m.get('cores')} cores, {m.get('ram_gib')} GiB RAM, {m.get('os')}; "
        f"Python {m.get('python')}; {m.get('database')}; Redis {m.get('redis')}; git {m.get('git')}"
    )


# Results to commit: the README's Performance table is generated from the newest (bench/readme.py).
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_json(directory: Path, *, results: list[Result], machine: dict, options: dict, started: datetime) -> Path:
    """var/bench/<time>.json and latest.json, and bench/results/<time>-<git>.json to commit."""
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "started_at": started.isoformat(),
        "duration_s": round((datetime.now(UTC) - started).total_seconds(), 1),
        "machine": machine,
        "options": options,
        "results": [{**asdict(r), "ratio": r.ratio, "verdict": verdict(r.ok)} for r in results],
    }
    text = json.dumps(payload, indent=2, default=str)
    path = directory / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(text)
    (directory / "latest.json").write_text(text)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{started.strftime('%Y%m%dT%H%M%SZ')}-{machine.get('git') or 'nogit'}.json").write_text(text)
    return path
