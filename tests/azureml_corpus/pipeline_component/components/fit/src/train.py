"""A stand-in for training: the word repeated, and the rows it saw."""

import argparse
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--data")
parser.add_argument("--word")
parser.add_argument("--times", type=int)
parser.add_argument("--model")
args = parser.parse_args()
rows = (Path(args.data) / "rows.txt").read_text().split()
(Path(args.model) / "model.txt").write_text(f"{'-'.join([args.word] * args.times)} {','.join(rows)}\n")
