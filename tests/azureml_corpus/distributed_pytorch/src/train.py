"""Each rank writes what torch.distributed's env:// initialization would read."""

import argparse
import os
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
args = parser.parse_args()

rank = os.environ["RANK"]
keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")
Path(args.out, f"rank-{rank}.txt").write_text("".join(f"{k}={os.environ[k]}\n" for k in keys))
print(f"rank {rank} of {os.environ['WORLD_SIZE']} done")
