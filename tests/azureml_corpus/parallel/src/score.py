"""Scores text files in mini-batches: each file's readings are summed, times --scale."""

import argparse
import os

scale = 1.0


def init():
    global scale
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--fail_on", default="")
    args, _ = parser.parse_known_args()
    scale = args.scale
    os.environ["SCORE_FAIL_ON"] = args.fail_on


def run(mini_batch):
    fail_on = os.environ.get("SCORE_FAIL_ON", "")
    rows = []
    for path in mini_batch:
        name = os.path.basename(path)
        if fail_on and name == fail_on:
            raise ValueError(f"cannot score {name}")
        total = sum(float(line.split()[1]) for line in open(path) if line.strip())
        rows.append(f"{name} {total * scale:g}")
    return rows
