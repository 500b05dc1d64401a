"""Upper-cases every row of the raw data."""

import argparse
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--raw")
parser.add_argument("--out")
args = parser.parse_args()
rows = (Path(args.raw) / "rows.txt").read_text().split()
(Path(args.out) / "rows.txt").write_text("\n".join(row.upper() for row in rows) + "\n")
print(f"prepared {len(rows)} rows")
