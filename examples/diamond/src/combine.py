"""Step D: sum what B and C produced and greet."""

import argparse
import json
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--squares", required=True)
parser.add_argument("--doubles", required=True)
parser.add_argument("--greeting", required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()


def total(folder: str) -> int:
    return sum(int(line) for line in Path(folder, "numbers.txt").read_text().split())


summary = {"greeting": args.greeting, "sum_of_squares": total(args.squares), "sum_of_doubles": total(args.doubles)}
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(f"{args.greeting}! squares sum to {summary['sum_of_squares']}, doubles to {summary['sum_of_doubles']}")
