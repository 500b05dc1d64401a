"""Writes the trained model's summary into a report."""

import argparse
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--scores")
parser.add_argument("--out")
args = parser.parse_args()
model = (Path(args.scores) / "model.txt").read_text().strip()
(Path(args.out) / "report.txt").write_text(f"report: {model}\n")
print(f"report: {model}")
