"""Steps B and C: raise each number to a power, or multiply it by a factor."""

import argparse
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--numbers", required=True)
parser.add_argument("--power", type=int, default=1)
parser.add_argument("--factor", type=int, default=1)
parser.add_argument("--out", required=True)
args = parser.parse_args()

numbers = [int(line) for line in Path(args.numbers, "numbers.txt").read_text().split()]
result = [n**args.power * args.factor for n in numbers]
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
(out / "numbers.txt").write_text("".join(f"{n}\n" for n in result))
print("result:", result)
