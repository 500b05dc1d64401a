"""Step A: write the numbers 1..count, one per line."""

import argparse
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--count", type=int, required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()

out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
(out / "numbers.txt").write_text("".join(f"{n}\n" for n in range(1, args.count + 1)))
print(f"wrote {args.count} numbers")
