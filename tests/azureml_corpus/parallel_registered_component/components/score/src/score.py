"""Scores text files in mini-batches: each file's readings (one number a line) summed, times --scale."""

import argparse
import logging
import os

scale = 1


def init():
    global scale
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=1)
    args, _ = parser.parse_known_args()
    scale = args.scale
    # The job's environment_variables reach the entry script; its logging_level sets the level.
    print(f"init: scale {scale}, label {os.environ.get('SCORE_LABEL')}", flush=True)
    logging.getLogger("score").debug("debug lines are hidden at INFO")


def run(mini_batch):
    rows = []
    for path in mini_batch:
        total = sum(int(line) for line in open(path) if line.strip())
        rows.append(f"{os.path.basename(path)} {total * scale}")
    return rows
